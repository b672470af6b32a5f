package plugin_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/netclient"
	"github.com/ebisync/ebisync/plugin"
)

// TestBearerToken: the Authorization header's bearer token, else the query
// parameter that netclient uses in a browser, else nothing.
func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		target, header, want string
	}{
		{"/sync", "", ""},
		{"/sync", "Bearer tok", "tok"},
		{"/sync", "bearer  tok ", "tok"},
		{"/sync", "Basic dXNlcg==", ""},
		{"/sync?" + netclient.TokenParam + "=tok", "", "tok"},
		{"/sync?" + netclient.TokenParam + "=a%2Bb%3D", "", "a+b="},
		{"/sync?" + netclient.TokenParam + "=query", "Bearer header", "header"}, // the header wins
		{"/sync?token=tok", "", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := plugin.BearerToken(r); got != tc.want {
			t.Errorf("BearerToken(%s, Authorization %q) = %q, want %q", tc.target, tc.header, got, tc.want)
		}
	}
}

// TestAuthenticateQueryToken: a client that cannot set headers, as a
// browser's WebSocket cannot, authenticates with its token in the URL's
// netclient.TokenParam, from a page of the server's own origin; a wrong or
// missing token is refused with 401.
func TestAuthenticateQueryToken(t *testing.T) {
	reg := standardRegistry()
	h := newHarness(t, reg, &plugin.Options{
		Authenticate: func(r *http.Request) (plugin.Identity, error) {
			if plugin.BearerToken(r) != "tok-carol" {
				return plugin.Identity{}, plugin.ErrUnauthenticated
			}
			return plugin.Identity{User: "carol"}, nil
		},
	}, 2*time.Millisecond)
	defer h.close()
	page := http.Header{"Origin": {"http://" + h.ts.Listener.Addr().String()}} // what a browser sends

	expectHTTP(t, h.url, page, http.StatusUnauthorized)
	expectHTTP(t, h.url+"?"+netclient.TokenParam+"=tok-mallory", page, http.StatusUnauthorized)

	ws := dialWS(t, h.url+"?"+netclient.TokenParam+"=tok-carol", reg, page, true)
	defer ws.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.ticks(1)
		per := h.srv.Stats().PerClient
		if len(per) == 1 && per[0].Identity.User == "carol" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clients %+v, want carol's", per)
		}
	}
	if n := h.srv.Stats().Refusals[plugin.RefusedUnauthenticated]; n != 2 {
		t.Fatalf("%d unauthenticated refusals, want 2", n)
	}
}
