package netclient

import (
	"net/url"
	"testing"
)

// TestTokenURL: the URL a browser dials carries the token in TokenParam,
// encoded, beside the URL's own query; no token leaves the URL as it is.
func TestTokenURL(t *testing.T) {
	for _, tc := range []struct{ raw, token, want string }{
		{"ws://host:8080/sync", "", "ws://host:8080/sync"},
		{"ws://host:8080/sync", "tok", "ws://host:8080/sync?access_token=tok"},
		{"wss://host/sync?room=3", "a b&c=", "wss://host/sync?access_token=a+b%26c%3D&room=3"},
		{"ws://host/sync?access_token=old", "new", "ws://host/sync?access_token=new"},
	} {
		got := tokenURL(tc.raw, tc.token)
		if got != tc.want {
			t.Errorf("tokenURL(%q, %q) = %q, want %q", tc.raw, tc.token, got, tc.want)
		}
		if tc.token == "" {
			continue
		}
		u, err := url.Parse(got)
		if err != nil || u.Query().Get(TokenParam) != tc.token {
			t.Errorf("tokenURL(%q, %q) = %q: the token does not read back (%v)", tc.raw, tc.token, got, err)
		}
	}
}
