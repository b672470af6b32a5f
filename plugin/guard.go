package plugin

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"
)

// Identity is who a client is, as Options.Authenticate established it
// before the WebSocket upgrade. The zero Identity is an anonymous client
// (no Authenticate hook).
type Identity struct {
	// User names the verified account. It is shown in Stats and logs.
	User string
	// Data is whatever else the game attached (roles, a session record);
	// the server never reads it.
	Data any
}

// Errors an Options.Authenticate hook returns (or wraps) to choose the HTTP
// status of its refusal. Any other error is answered like
// ErrUnauthenticated.
var (
	// ErrUnauthenticated refuses with 401 Unauthorized: the request carries
	// no credentials, or credentials that are not valid.
	ErrUnauthenticated = errors.New("not authenticated")
	// ErrAccessDenied refuses with 403 Forbidden: the credentials are
	// valid, but this account may not join.
	ErrAccessDenied = errors.New("access denied")
)

// BearerToken returns the request's bearer token: that of its
// "Authorization: Bearer <token>" header, else its "access_token" query
// parameter (RFC 6750 §2.3), else "". It is a helper for
// Options.Authenticate. netclient sends its Options.Token in the header,
// and from a browser, whose WebSocket cannot carry the header, in the query
// parameter (netclient.TokenParam). It is safe for concurrent use.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	if r.URL == nil {
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// Refusal reasons: the keys of Stats.Refusals, and the "reason" of the
// server's rate-limited refusal logs. docs/SECURITY.md lists the answer each
// one gets.
const (
	RefusedOrigin          = "origin"             // 403: a cross-site Origin (Options.OriginPatterns)
	RefusedUnauthenticated = "unauthenticated"    // 401: Authenticate refused the credentials
	RefusedAccessDenied    = "access-denied"      // 403: Authenticate denied the account
	RefusedConnections     = "connection-limit"   // 503: Options.MaxConnections reached
	RefusedHandshakes      = "handshake-limit"    // 503: Options.MaxHandshakes reached
	RefusedPerAddress      = "address-limit"      // 429: Options.MaxConnectionsPerAddress reached
	RefusedHandshake       = "handshake"          // 4000: no Hello in time, or a malformed one
	RefusedSchema          = "schema"             // 4001: protocol version or registry mismatch
	RefusedProtocol        = "protocol"           // 4000: a malformed or unexpected message
	RefusedReadLimit       = "read-limit"         // 1009: a message over Options.ReadLimit
	RefusedFlood           = "flood"              // 4002: the inbound queue or the rate-limit answers overflowed
	RefusedSubscriptions   = "subscription-limit" // 4002: entity subscriptions, or their rate, past the limits
	RefusedPanic           = "panic"              // 1011: handling the client's input panicked
	RefusedTooSlow         = "too-slow"           // 4003: a write to the client timed out
	RefusedMessages        = "message-overflow"   // 4003: the game's messages to the client overflowed Options.MessageQueueBytes
	RefusedUpstream        = "upstream"           // 1013: a gateway's simulation did not answer the client's join
)

// refusal indexes the counters of refusalNames.
type refusal int

const (
	refOrigin refusal = iota
	refUnauthenticated
	refAccessDenied
	refConnections
	refHandshakes
	refPerAddress
	refHandshake
	refSchema
	refProtocol
	refReadLimit
	refFlood
	refSubscriptions
	refPanic
	refTooSlow
	refMessages
	refUpstream
	refusalKinds
)

var refusalNames = [refusalKinds]string{
	RefusedOrigin, RefusedUnauthenticated, RefusedAccessDenied, RefusedConnections,
	RefusedHandshakes, RefusedPerAddress, RefusedHandshake, RefusedSchema,
	RefusedProtocol, RefusedReadLimit, RefusedFlood, RefusedSubscriptions,
	RefusedPanic, RefusedTooSlow, RefusedMessages, RefusedUpstream,
}

// refusals counts refusals by reason and logs each reason at most once per
// interval, with the count since its last line, so a flood of bad peers is
// a few log lines and a counter, not a line per peer.
type refusals struct {
	log      *slog.Logger
	interval time.Duration
	epoch    time.Time
	counts   [refusalKinds]atomic.Uint64
	unlogged [refusalKinds]atomic.Uint64
	lastLog  [refusalKinds]atomic.Int64 // nanoseconds since epoch; 0 never
	// observer, when set, sees every refusal: the Inspector's log
	// (inspect.go).
	observer atomic.Pointer[Inspector]
}

// add counts one refusal and logs it when its reason was not logged within
// the interval. msg and args describe this occurrence.
func (f *refusals) add(why refusal, msg string, args ...any) {
	f.counts[why].Add(1)
	f.unlogged[why].Add(1)
	if in := f.observer.Load(); in != nil {
		in.noteRefusal(refusalNames[why], msg, args)
	}
	now := int64(time.Since(f.epoch)) + 1
	last := f.lastLog[why].Load()
	if last != 0 && now-last < int64(f.interval) {
		return
	}
	if !f.lastLog[why].CompareAndSwap(last, now) {
		return // another goroutine logs this interval
	}
	n := f.unlogged[why].Swap(0)
	f.log.Warn("ebisync: "+msg, append([]any{"reason", refusalNames[why], "count", n}, args...)...)
}

// read fills m with the non-zero counts.
func (f *refusals) read(m map[string]uint64) {
	for i := range f.counts {
		if n := f.counts[i].Load(); n > 0 {
			m[refusalNames[i]] = n
		}
	}
}

// checkOrigin applies coder/websocket's Origin rule, which Accept applies
// again: no Origin header (a non-browser client), an Origin whose host is
// the request's Host, or one matching a pattern of Options.OriginPatterns
// (path.Match syntax, against the host, or against scheme://host when the
// pattern has a scheme).
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("the Origin %q is not a URL", origin)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("the Origin %q is not allowed for host %q", origin, r.Host)
}

// addrKey is the per-address limit's key of a remote address: the IP
// without the port.
func addrKey(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// admission is a connection counted against the limits, from before the
// upgrade to its end.
type admission struct {
	addr       string
	handshake  bool // still counted in Server.handshaking
	identity   Identity
	remoteAddr string
}

// admitHTTP checks an upgrade request against the Origin rule, the
// connection limits and Authenticate, in that order, and answers a refusal
// itself. On success the connection is counted until s.leave.
func (s *Server) admitHTTP(w http.ResponseWriter, r *http.Request) (*admission, bool) {
	o := &s.opts
	remote := r.RemoteAddr
	if o.RemoteAddr != nil {
		remote = o.RemoteAddr(r)
	}
	if err := checkOrigin(r, o.OriginPatterns); err != nil {
		s.refused.add(refOrigin, "refused a cross-site connection", "remote", remote, "err", err)
		http.Error(w, "ebisync: cross-site WebSocket request refused: "+err.Error(), http.StatusForbidden)
		return nil, false
	}
	key := addrKey(remote)
	s.mu.Lock()
	var why refusal = -1
	switch {
	case s.closed:
		s.mu.Unlock()
		http.Error(w, "ebisync: server closed", http.StatusServiceUnavailable)
		return nil, false
	case len(s.conns)+s.handshaking >= o.MaxConnections:
		why = refConnections
	case s.handshaking >= o.MaxHandshakes:
		why = refHandshakes
	case s.perAddr[key] >= o.MaxConnectionsPerAddress:
		why = refPerAddress
	}
	if why < 0 {
		s.handshaking++
		s.perAddr[key]++
	}
	s.mu.Unlock()
	switch why {
	case refConnections, refHandshakes:
		s.refused.add(why, "refused a connection over a server limit", "remote", remote)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "ebisync: server full, try again later", http.StatusServiceUnavailable)
		return nil, false
	case refPerAddress:
		s.refused.add(why, "refused a connection over the per-address limit", "remote", remote, "limit", o.MaxConnectionsPerAddress)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "ebisync: too many connections from this address", http.StatusTooManyRequests)
		return nil, false
	}
	ad := &admission{addr: key, handshake: true, remoteAddr: remote}
	if o.Authenticate != nil {
		id, err := s.authenticate(r)
		if err != nil {
			s.leave(ad)
			status, why := http.StatusUnauthorized, refUnauthenticated
			if errors.Is(err, ErrAccessDenied) {
				status, why = http.StatusForbidden, refAccessDenied
			}
			s.refused.add(why, "refused a connection at authentication", "remote", remote, "err", err)
			http.Error(w, "ebisync: "+err.Error(), status)
			return nil, false
		}
		ad.identity = id
	}
	return ad, true
}

// authenticate runs Options.Authenticate; a panic in it is a refusal.
func (s *Server) authenticate(r *http.Request) (id Identity, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("ebisync: Authenticate panicked", "panic", v)
			id, err = Identity{}, fmt.Errorf("%w: authentication failed", ErrUnauthenticated)
		}
	}()
	return s.opts.Authenticate(r)
}

// handshaken moves a connection from the handshake count to the
// established ones (counted by s.conns).
func (s *Server) handshaken(ad *admission) {
	ad.handshake = false
	s.handshaking--
}

// leave ends a connection's count. s.mu must not be held.
func (s *Server) leave(ad *admission) {
	s.mu.Lock()
	if ad.handshake {
		s.handshaking--
	}
	if n := s.perAddr[ad.addr] - 1; n > 0 {
		s.perAddr[ad.addr] = n
	} else {
		delete(s.perAddr, ad.addr)
	}
	s.mu.Unlock()
}
