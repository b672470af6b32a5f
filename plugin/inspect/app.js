// The ebisync inspector's page. It reads the server's snapshots from
// api/events (Server-Sent Events; api/state has the same JSON) and sends
// edits to api/edit. Every text from the server is set with textContent:
// client names and component strings come from the network.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);

  // el makes an element with properties and children (strings are text).
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = v;
        else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else if (k === "dataset") Object.assign(e.dataset, v);
        else e.setAttribute(k, v);
      }
    }
    for (const c of children) {
      if (c == null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // The access token: from the page's URL (then removed from the address
  // bar), or from this tab's storage.
  const TOKEN_KEY = "ebisync-inspector-token";
  let token = "";
  {
    const u = new URL(location.href);
    const t = u.searchParams.get("access_token");
    if (t) {
      token = t;
      try { sessionStorage.setItem(TOKEN_KEY, t); } catch (e) { /* storage off */ }
      u.searchParams.delete("access_token");
      history.replaceState(null, "", u.pathname + u.search + u.hash);
    } else {
      try { token = sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { /* storage off */ }
    }
  }

  const state = {
    selected: 0, q: "", comp: "",
    history: [], log: [], last: null,
    collapsed: new Set(),
    detailKey: "", reveal: false,
  };
  // The page's status, for tests and the curious.
  const status = globalThis.ebisyncInspector = {
    connected: false, events: 0, connections: 0, entities: 0, listed: 0, query: "", comp: "",
    selected: 0, entityLive: false, values: 0, chartsDrawn: 0, lastEdit: null, error: "",
  };

  // Formatting.
  const num = (v, d = 0) => Number(v).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
  const msec = (v) => num(v, v < 10 ? 2 : v < 100 ? 1 : 0) + " ms";
  function bytes(v) {
    const u = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    v = Number(v);
    while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i === 0 ? num(v) : num(v, v < 10 ? 2 : 1)) + " " + u[i];
  }
  const rate = (v) => bytes(v) + "/s";
  function micros(v) {
    v = Number(v);
    if (v >= 1000) return num(v / 1000, v >= 10000 ? 1 : 2) + " ms";
    return num(v, v >= 100 ? 0 : 1) + " µs";
  }
  function duration(s) {
    s = Math.floor(s);
    const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }
  const clock = (ms) => new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
  const okStatus = (s) => s === "Ok" || s === "Taken" || s === "Released";

  // --- live updates -------------------------------------------------------

  let es = null;
  let reconnectTimer = 0;

  function params(extra) {
    const p = new URLSearchParams();
    if (token) p.set("access_token", token);
    if (state.selected) p.set("entity", String(state.selected));
    if (state.q) p.set("q", state.q);
    if (state.comp) p.set("comp", state.comp);
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    return p;
  }

  function connect() {
    if (es) es.close();
    const extra = {};
    if (state.history.length) extra.since = String(state.history[state.history.length - 1].t);
    if (state.log.length) extra.logSince = String(state.log[state.log.length - 1].seq);
    es = new EventSource("api/events?" + params(extra));
    const q = state.q, comp = state.comp;
    es.addEventListener("state", (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      status.query = q;
      status.comp = comp;
      setLive(true, "live");
      $("auth").hidden = true;
      apply(d);
    });
    es.onerror = () => {
      setLive(false, "reconnecting…");
      if (es.readyState === EventSource.CLOSED) {
        // Not an event stream: most likely refused. Ask api/state why.
        diagnose();
      }
    };
  }

  function reconnectSoon() {
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, 250);
  }

  async function diagnose() {
    let msg = "";
    try {
      const r = await fetch("api/state?" + params({ limit: "0" }), { headers: authHeaders(), cache: "no-store" });
      if (r.ok) { reconnectSoon(); return; }
      msg = r.status + ": " + (await r.text()).trim();
      if (r.status === 401 || r.status === 403) {
        $("auth-msg").textContent = msg;
        $("auth").hidden = false;
      }
    } catch (e) {
      msg = String(e);
    }
    status.error = msg;
    setLive(false, "disconnected");
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, 3000);
  }

  function authHeaders() {
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function setLive(on, text) {
    status.connected = on;
    const l = $("live");
    l.className = on ? "on" : "off";
    l.textContent = text;
  }

  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("auth-token").value.trim();
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* storage off */ }
    $("auth").hidden = true;
    connect();
  });

  // --- applying a snapshot ------------------------------------------------

  function apply(d) {
    state.last = d;
    status.events++;
    status.connections = d.connections.length;
    status.entities = d.server.entities;
    status.listed = d.entities.list.length;
    status.error = "";
    const last = state.history.length ? state.history[state.history.length - 1].t : 0;
    for (const s of d.history) if (s.t > last) state.history.push(s);
    const cut = d.t - d.historySec * 1000;
    while (state.history.length && state.history[0].t < cut) state.history.shift();
    const lastSeq = state.log.length ? state.log[state.log.length - 1].seq : 0;
    for (const e of d.log) if (e.seq > lastSeq) state.log.push(e);
    if (state.log.length > 200) state.log.splice(0, state.log.length - 200);

    renderSummary(d);
    renderCharts(d);
    renderComps(d);
    renderTree(d);
    renderDetail(d);
    renderLog();
    renderConns(d);
  }

  function renderSummary(d) {
    const s = d.server;
    $("s-tick").textContent = num(d.tick);
    $("s-rate").textContent = d.tickRate + " Hz";
    $("s-uptime").textContent = duration(d.uptimeSec);
    $("s-entities").textContent = num(s.entities);
    $("s-connections").textContent = num(s.connections) + (s.clients !== s.connections ? " (" + num(s.clients) + " playing)" : "") +
      (s.gateways ? " · " + num(s.remoteClients) + " on " + num(s.gateways) + " gateway" + (s.gateways === 1 ? "" : "s") : "");
    $("s-subs").textContent = num(s.subscriptions);
    const muts = Object.entries(s.mutations);
    $("s-mutations").textContent = muts.length ? muts.map(([k, v]) => k + " " + num(v)).join(" · ") : "0";
    const refs = Object.entries(s.refusals || {});
    $("s-refusals").textContent = refs.length ? refs.map(([k, v]) => k + " " + num(v)).join(" · ") : "0";
  }

  // --- charts -------------------------------------------------------------

  const COLORS = { inbound: "#a78bfa", detect: "#5cc8ff", scopes: "#59d185", send: "#f2c14e", max: "#ff6b6b",
    in: "#5cc8ff", out: "#f2c14e", heap: "#59d185", go: "#5cc8ff", rss: "#a78bfa", cpu: "#ff9f5a" };

  function renderCharts(d) {
    const h = state.history;
    // The charts span the history kept, from half a minute up to
    // historySec.
    const end = d.t, first = h.length ? h[0].t : end;
    const start = end - Math.min(d.historySec * 1000, Math.max(30000, end - first));
    let drawn = 0;
    drawn += chart($("c-tick"), start, end, [
      { label: "inbound", color: COLORS.inbound, key: "inboundUs", stack: true },
      { label: "detect", color: COLORS.detect, key: "detectUs", stack: true },
      { label: "scope", color: COLORS.scopes, key: "scopesUs", stack: true },
      { label: "send", color: COLORS.send, key: "sendUs", stack: true },
      { label: "max", color: COLORS.max, key: "tickMaxUs" },
    ], micros);
    drawn += chart($("c-net"), start, end, [
      { label: "out", color: COLORS.out, key: "outBps" },
      { label: "in", color: COLORS.in, key: "inBps" },
    ], rate);
    drawn += chart($("c-mem"), start, end, [
      { label: "RSS", color: COLORS.rss, key: "rssBytes" },
      { label: "Go", color: COLORS.go, key: "goBytes" },
      { label: "heap", color: COLORS.heap, key: "heapBytes" },
    ], bytes);
    drawn += chart($("c-cpu"), start, end, [
      { label: "cores", color: COLORS.cpu, key: "cpu" },
    ], (v) => num(v * 100, 0) + "%");
    if (drawn) status.chartsDrawn++;
    const s = h.length ? h[h.length - 1] : null;
    if (s) {
      $("c-tick-cur").textContent = "avg " + micros(s.tickAvgUs) + " · max " + micros(s.tickMaxUs);
      $("c-net-cur").textContent = "out " + rate(s.outBps) + " · in " + rate(s.inBps);
      $("c-mem-cur").textContent = (s.rssBytes ? "RSS " + bytes(s.rssBytes) + " · " : "") + "heap " + bytes(s.heapBytes);
      $("c-cpu-cur").textContent = num(s.cpu * 100, 0) + "% of a core";
    }
  }

  // chart draws the series over [start, end] and reports whether it drew
  // a line (two points or more).
  function chart(canvas, start, end, series, fmt) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 300, h = canvas.clientHeight || 130;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const pts = state.history.filter((s) => s.t >= start);
    const left = 52, right = 4, top = 16, bottom = 14;
    const pw = w - left - right, ph = h - top - bottom;
    // The stacked series add up.
    const stacked = series.filter((s) => s.stack);
    let ymax = 0;
    for (const p of pts) {
      let sum = 0;
      for (const s of stacked) sum += Number(p[s.key]) || 0;
      ymax = Math.max(ymax, sum);
      for (const s of series) if (!s.stack) ymax = Math.max(ymax, Number(p[s.key]) || 0);
    }
    ymax = niceMax(ymax);
    const x = (t) => left + (t - start) / (end - start) * pw;
    const y = (v) => top + ph - (v / ymax) * ph;
    // Grid and labels.
    g.font = "10px system-ui, sans-serif";
    g.textBaseline = "middle";
    g.lineWidth = 1;
    for (let i = 0; i <= 3; i++) {
      const v = ymax * i / 3, yy = Math.round(y(v)) + 0.5;
      g.strokeStyle = "#2c3440";
      g.beginPath(); g.moveTo(left, yy); g.lineTo(left + pw, yy); g.stroke();
      g.fillStyle = "#8893a3";
      g.textAlign = "right";
      g.fillText(fmt(v), left - 4, yy);
    }
    g.textAlign = "left";
    const span = (end - start) / 1000;
    g.fillText("-" + (span >= 90 ? Math.round(span / 60) + " min" : Math.round(span) + " s"), left, h - 6);
    g.textAlign = "right";
    g.fillText("now", left + pw, h - 6);
    // Legend.
    let lx = left;
    g.textAlign = "left";
    for (const s of series) {
      g.fillStyle = s.color;
      g.fillRect(lx, 3, 8, 8);
      g.fillStyle = "#d7dde6";
      g.fillText(s.label, lx + 10, 7);
      lx += 10 + g.measureText(s.label).width + 7;
    }
    if (pts.length < 2) {
      g.fillStyle = "#8893a3";
      g.textAlign = "center";
      g.fillText("collecting…", left + pw / 2, top + ph / 2);
      canvas.dataset.points = String(pts.length);
      return false;
    }
    // Stacked areas, bottom first.
    const base = pts.map(() => 0);
    for (const s of stacked) {
      const topv = pts.map((p, i) => base[i] + (Number(p[s.key]) || 0));
      g.beginPath();
      pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(topv[i])) : g.moveTo(x(p.t), y(topv[i]))));
      for (let i = pts.length - 1; i >= 0; i--) g.lineTo(x(pts[i].t), y(base[i]));
      g.closePath();
      g.fillStyle = s.color + "99";
      g.fill();
      topv.forEach((v, i) => (base[i] = v));
    }
    // Lines.
    for (const s of series) {
      if (s.stack) continue;
      g.beginPath();
      pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(Number(p[s.key]) || 0)) : g.moveTo(x(p.t), y(Number(p[s.key]) || 0))));
      g.strokeStyle = s.color;
      g.lineWidth = 1.5;
      g.stroke();
    }
    canvas.dataset.points = String(pts.length);
    return true;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.5, 2, 3, 5, 7.5, 10]) if (v * 1.05 <= m * p) return m * p;
    return 10 * p;
  }

  // --- entities -----------------------------------------------------------

  function renderComps(d) {
    const box = $("comps");
    box.replaceChildren(...d.components.filter((c) => c.count > 0 || c.name === state.comp).map((c) =>
      el("span", {
        class: "chip" + (state.comp === c.name ? " on" : ""), title: c.writable ? "client-writable" : "",
        dataset: { comp: c.name },
        onclick: () => { state.comp = state.comp === c.name ? "" : c.name; reconnectSoon(); renderComps(d); },
      }, c.name, el("b", { text: num(c.count) }))));
  }

  function renderTree(d) {
    const list = d.entities.list;
    const e = d.entities;
    $("e-count").textContent = num(e.matched) + (e.matched !== e.total ? " of " + num(e.total) : "") +
      (list.filter((x) => !x.context).length < e.matched ? " (showing " + num(list.filter((x) => !x.context).length) + ")" : "");
    const names = d.components.map((c) => c.name);
    const byID = new Map(list.map((x) => [x.id, x]));
    const kids = new Map();
    const roots = [];
    for (const x of list) {
      if (x.parent && byID.has(x.parent)) {
        if (!kids.has(x.parent)) kids.set(x.parent, []);
        kids.get(x.parent).push(x);
      } else roots.push(x);
    }
    const seen = new Set();
    const build = (items, depth) => el("ul", null, ...items.map((x) => {
      if (seen.has(x.id) || depth > 64) return null;
      seen.add(x.id);
      const ch = kids.get(x.id) || [];
      const open = !state.collapsed.has(x.id);
      const row = el("div", {
        class: "node" + (x.id === state.selected ? " sel" : "") + (x.context ? " ctx" : ""),
        dataset: { id: String(x.id) },
        title: x.comps.map((i) => names[i]).join(", "),
        onclick: (ev) => {
          if (ch.length && ev.target.classList.contains("tog")) {
            if (open) state.collapsed.add(x.id); else state.collapsed.delete(x.id);
            renderTree(state.last);
            return;
          }
          select(x.id);
        },
      },
      el("span", { class: "tog", text: ch.length ? (open ? "▾" : "▸") : "" }),
      el("span", { class: "id", text: "#" + x.id }),
      x.name ? el("span", { text: x.name }) : null,
      el("span", { class: "nc", text: label(x, names) + (ch.length ? " · " + ch.length + " child" + (ch.length === 1 ? "" : "ren") : "") }));
      return el("li", null, row, ch.length && open ? build(ch, depth + 1) : null);
    }));
    const tree = $("tree");
    const top = tree.scrollTop;
    tree.replaceChildren(list.length ? build(roots, 0) : el("p", { class: "muted", text: "No entity matches." }));
    tree.scrollTop = top;
    if (state.reveal && status.query === state.q) {
      // Once after a pick: bring the picked entity into view.
      const node = tree.querySelector(".node.sel");
      if (node) {
        state.reveal = false;
        tree.scrollTop += node.getBoundingClientRect().top - tree.getBoundingClientRect().top - tree.clientHeight / 3;
      }
    }
  }

  // label lists an entity's components by short name (the wire name
  // after its last dot), leaving out the bookkeeping ones.
  const QUIET = new Set(["ebisync.owner", "ebisync.control", "ebisync.parent", "ebisync.transform", "ebisync.name"]);
  function label(x, names) {
    const shown = x.comps.map((i) => names[i]).filter((n) => n && !QUIET.has(n)).map((n) => n.slice(n.lastIndexOf(".") + 1));
    return shown.length > 4 ? shown.slice(0, 4).join(" · ") + " …" : shown.join(" · ");
  }

  let searchTimer = 0;
  $("search").addEventListener("input", (ev) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.q = ev.target.value.trim(); state.reveal = true; reconnectSoon(); }, 300);
  });

  function select(id) {
    state.selected = id;
    state.reveal = true;
    status.selected = id;
    status.entityLive = false;
    status.values = 0;
    state.detailKey = "";
    $("d-title").textContent = "#" + id;
    $("detail").replaceChildren(el("p", { class: "muted", text: "Loading #" + id + "…" }));
    if (state.last) renderTree(state.last);
    reconnectSoon();
  }

  // renderDetail shows the picked entity's values. Its form is rebuilt
  // only when the entity or its fields change, so that what is typed in it
  // survives the updates; the values beside it follow every snapshot.
  function renderDetail(d) {
    const x = d.entity;
    if (!state.selected || !x || x.id !== state.selected) return;
    status.entityLive = x.live;
    if (!x.live) {
      state.detailKey = "gone";
      $("d-title").textContent = "#" + x.id + " (gone)";
      $("detail").replaceChildren(el("p", { class: "muted", text: "Entity #" + x.id + " is not in the World." }));
      return;
    }
    status.values = x.components.length;
    const key = x.id + "/" + x.gen + "/" + x.components.map((c) => c.name + ":" + (c.fields || []).map((f) => f.path).join(",")).join(";");
    $("d-title").textContent = "#" + x.id + (x.name ? " " + x.name : "") + " · gen " + x.gen;
    if (key !== state.detailKey) {
      state.detailKey = key;
      $("detail").replaceChildren(...detailForm(x));
    }
    for (const c of x.components) {
      for (const f of c.fields || []) {
        const cell = document.querySelector(`.comp[data-comp="${CSS.escape(c.name)}"] .v[data-field="${CSS.escape(f.path)}"]`);
        if (cell) cell.textContent = show(f.value);
      }
      if (c.raw != null) {
        const cell = document.querySelector(`.comp[data-comp="${CSS.escape(c.name)}"] .raw`);
        if (cell) cell.textContent = c.raw || "(empty)";
      }
    }
    const rel = $("d-rel");
    if (rel) {
      rel.replaceChildren("parent ", x.parent ? link(x.parent) : "none", " · children ",
        ...(x.children.length ? x.children.slice(0, 20).flatMap((id, i) => [i ? ", " : "", link(id)]) : ["none"]),
        x.children.length > 20 ? " …" : "");
    }
  }

  function link(id) {
    return el("a", { href: "#", text: "#" + id, onclick: (ev) => { ev.preventDefault(); select(id); } });
  }

  function show(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function detailForm(x) {
    const out = [el("p", { id: "d-rel", class: "muted" })];
    if (!x.components.length) out.push(el("p", { class: "muted", text: "No values yet." }));
    for (const c of x.components) {
      const box = el("div", { class: "comp", dataset: { comp: c.name } },
        el("h3", null, c.name,
          el("span", { class: "tag" + (c.writable ? " w" : ""), text: c.writable ? "client-writable" : "read-only" })));
      if (c.raw != null) {
        box.append(el("div", { class: "fields" }, el("span", { class: "k", text: "bytes" }), el("span", { class: "v raw" }), el("span")));
        out.push(box);
        continue;
      }
      const grid = el("div", { class: "fields" });
      let editable = false;
      for (const f of c.fields) {
        grid.append(el("span", { class: "k", text: f.path, title: f.type }), el("span", { class: "v", dataset: { field: f.path } }));
        if (f.editable && c.writable) {
          editable = true;
          grid.append(el("input", { type: "text", placeholder: f.type, dataset: { field: f.path, type: f.type }, spellcheck: "false" }));
        } else grid.append(el("span"));
      }
      box.append(grid);
      if (editable) {
        const result = el("span", { class: "status" });
        const btn = el("button", { type: "button", text: "Apply", dataset: { apply: c.name }, onclick: () => sendEdit(x, c, box, result) });
        box.append(el("div", { class: "apply" }, btn, result));
      }
      out.push(box);
    }
    return out;
  }

  // literal turns what was typed into the JSON of a field of type t, or
  // throws.
  function literal(t, s) {
    if (t === "string") return JSON.stringify(s);
    if (t === "bool") {
      if (s === "true" || s === "false") return s;
      throw new Error("true or false");
    }
    if (/^u?int/.test(t)) {
      if (/^-?\d+$/.test(s)) return s;
      throw new Error("an integer");
    }
    if (/^float/.test(t)) {
      if (/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return s;
      throw new Error("a number");
    }
    throw new Error("not editable");
  }

  async function sendEdit(x, c, box, result) {
    const parts = [];
    try {
      for (const input of box.querySelectorAll("input[data-field]")) {
        const s = input.value.trim();
        if (s === "" && input.dataset.type !== "string") continue;
        if (s === "" && input.dataset.type === "string" && !input.dataset.touched) continue;
        parts.push(JSON.stringify(input.dataset.field) + ":" + literal(input.dataset.type, s));
      }
    } catch (e) {
      showResult(result, { status: "Invalid", message: e.message }, c.name);
      return;
    }
    if (!parts.length) {
      showResult(result, { status: "Invalid", message: "type a new value first" }, c.name);
      return;
    }
    const body = '{"id":' + x.id + ',"gen":' + x.gen + ',"component":' + JSON.stringify(c.name) + ',"fields":{' + parts.join(",") + "}}";
    result.className = "status";
    result.textContent = "sending…";
    try {
      const r = await fetch("api/edit", { method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body, cache: "no-store" });
      const text = await r.text();
      let res;
      try { res = JSON.parse(text); } catch (e) { res = { status: "HTTP " + r.status, message: text.trim() }; }
      showResult(result, res, c.name);
      if (res.status === "Ok") for (const input of box.querySelectorAll("input[data-field]")) { input.value = ""; delete input.dataset.touched; }
    } catch (e) {
      showResult(result, { status: "Error", message: String(e) }, c.name);
    }
  }

  document.addEventListener("input", (ev) => {
    if (ev.target instanceof HTMLInputElement && ev.target.dataset.field) ev.target.dataset.touched = "1";
  });

  function showResult(node, res, comp) {
    const ok = res.status === "Ok";
    node.className = "status " + (ok ? "ok" : "bad");
    node.textContent = res.status + (res.message ? ": " + res.message : "");
    status.lastEdit = { component: comp, status: res.status, message: res.message || "" };
  }

  // --- log and connections ------------------------------------------------

  function renderLog() {
    const rows = state.log.slice(-120).reverse().map((e) => {
      const who = e.kind === "refusal" ? (e.addr || (e.client ? "client " + e.client : "")) :
        (e.client ? "client " + e.client : "") + (e.user ? " (" + e.user + ")" : e.name ? " " + e.name : "");
      const cls = e.ok || okStatus(e.status) ? "st-ok" : e.status === "RateLimited" ? "st-warn" : "st-bad";
      const what = e.entity ? "#" + e.entity + (e.component ? " " + e.component : "") : e.component || "";
      return el("li", { dataset: { kind: e.kind, status: e.status } },
        el("div", { class: "line" },
          el("span", { class: "t", text: clock(e.t) }),
          el("span", { class: "kind", text: e.kind }),
          el("span", { class: "who", text: who }),
          el("span", { class: "what", text: what }),
          el("span", { class: "st " + cls, text: e.status })),
        e.message ? el("div", { class: "msg", text: e.message }) : null);
    });
    $("log-rows").replaceChildren(...(rows.length ? rows : [el("li", { class: "muted", text: "Nothing yet." })]));
  }

  function renderConns(d) {
    $("c-count").textContent = num(d.connections.length);
    const rows = d.connections.map((c) => {
      if (c.gateway) {
        // A client of one of the simulation's gateways: the gateway holds
        // its connection and its scope.
        const dash = (title) => el("td", { class: "muted", text: "–", title: title });
        const atGw = "at gateway " + c.gateway;
        return el("tr", { dataset: { client: String(c.id), gateway: c.gateway } },
          el("td", { text: String(c.id) }),
          el("td", { text: c.name }),
          el("td", { text: c.user || "–" }),
          el("td", { text: c.addr }),
          el("td", { text: "gateway " + c.gateway.slice(0, 8), title: "its gateway " + c.gateway + " runs its interest and scope" }),
          dash(atGw), dash(atGw), dash(atGw), dash(atGw), dash(atGw), dash(atGw),
          el("td", { text: c.parked ? "parked: waits for a resume" : "–" }),
          el("td", { class: c.refused ? "st-bad" : "", text: num(c.refused) }));
      }
      const i = c.interest;
      const interest = i.mode === "global" ? "global" :
        i.mode + " (" + num(i.x) + ", " + num(i.y) + ") r " + num(i.radius) + (i.follow ? " → #" + i.follow : "");
      const all = c.subs.components.length === d.components.length;
      const subs = (all ? "every component (" + d.components.length + ")" : c.subs.components.length ? c.subs.components.join(", ") : "no components") +
        (c.subs.entities ? " + " + c.subs.entities + " entit" + (c.subs.entities === 1 ? "y" : "ies") : "");
      const queued = c.parked ? "parked: waits for a resume" : (c.writing ? "1 batch" : "0") + (c.dirty ? " · " + num(c.dirty) + " waiting" : "") +
        (c.inboundBytes ? " · in " + bytes(c.inboundBytes) : "");
      return el("tr", { dataset: { client: String(c.id) } },
        el("td", { text: String(c.id) }),
        el("td", { text: c.name }),
        el("td", { text: c.user || "–" }),
        el("td", { text: c.addr }),
        el("td", { text: interest }),
        el("td", { class: "wrap", text: subs }),
        el("td", { text: num(c.scope) }),
        el("td", { text: num(c.sendRate, 1) + "/s" }),
        el("td", { text: rate(c.inBps) }),
        el("td", { text: rate(c.outBps) }),
        el("td", { text: c.rttMs == null ? "–" : msec(c.rttMs),
          title: c.rttMs == null ? "no round trip yet: the client has not answered a Ping" : "smoothed; last sample " + msec(c.rttLastMs) }),
        el("td", { text: queued }),
        el("td", { class: c.refused ? "st-bad" : "", text: num(c.refused) }));
    });
    $("conn-rows").replaceChildren(...(rows.length ? rows : [el("tr", null, el("td", { colspan: "13", class: "muted", text: "No connections." }))]));
  }

  addEventListener("resize", () => { if (state.last) renderCharts(state.last); });
  connect();
})();
