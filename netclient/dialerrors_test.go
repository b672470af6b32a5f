package netclient_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ebisync/ebisync/netclient"
)

// TestDialErrors: each way a new user gets the URL wrong gives one
// sentence that names the URL once and says what to check.
func TestDialErrors(t *testing.T) {
	reg := newRegistry()
	// A port nobody listens on: listen, note the port, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	// A web server with no ebisync endpoint at the path dialled.
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	webHost := strings.TrimPrefix(web.URL, "http://")

	for _, tc := range []struct {
		name, url string
		want      []string // in the message
		is        error
	}{
		{"refused port", "ws://" + closed + "/sync", []string{"connection refused", "is the server running", closed}, netclient.ErrUnreachable},
		{"wrong path", "ws://" + webHost + "/wrong", []string{"HTTP 404", "nothing is served at /wrong", "check the URL's path", "/sync"}, nil},
		{"missing scheme", "localhost:8080/sync", []string{"needs a scheme", "ws://localhost:8080/sync"}, nil},
		{"missing scheme, IP", closed + "/sync", []string{"needs a scheme", "ws://" + closed + "/sync"}, nil},
		{"http URL", "http://" + webHost + "/sync", []string{"is an HTTP URL", "ws://" + webHost + "/sync"}, nil},
		{"https URL", "https://game.example/sync", []string{"is an HTTPS URL", "wss://game.example/sync"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := netclient.Dial(ctx, tc.url, reg, &netclient.Options{Logger: testLogger(t)})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
			if n := strings.Count(msg, tc.url); n > 1 {
				t.Errorf("%q names the URL %d times", msg, n)
			}
			if n := strings.Count(strings.ToLower(msg), "failed"); n > 1 {
				t.Errorf("%q says failed %d times", msg, n)
			}
			if strings.Count(msg, "\n") > 0 || strings.Count(msg, ": ") > 3 {
				t.Errorf("%q is not one sentence", msg)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) is false", err, tc.is)
			}
		})
	}
}
