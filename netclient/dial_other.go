//go:build !js

package netclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"syscall"

	"github.com/coder/websocket"

	"github.com/ebisync/ebisync/internal/eofconn"
)

// prepareDial sets up what every dial of the client uses: the HTTP client
// whose connections are eofconn.Conns.
func (c *Client) prepareDial() {
	c.http = eofClient(c.opts.HTTPClient)
}

// dial opens the WebSocket to rawURL: an HTTP upgrade through
// Options.HTTPClient with Options.HTTPHeader (which carries Options.Token
// as a bearer token), without per-message compression. It returns the
// network connection under the WebSocket when the transport told it, to
// drop it when a close handshake hangs (see session.kill). A refused
// upgrade is an *HTTPError.
func (c *Client) dial(ctx context.Context, rawURL string) (*websocket.Conn, net.Conn, error) {
	var rawMu sync.Mutex
	var raw net.Conn
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		rawMu.Lock()
		raw = info.Conn
		rawMu.Unlock()
	}}
	ws, resp, err := websocket.Dial(httptrace.WithClientTrace(ctx, trace), rawURL, &websocket.DialOptions{
		HTTPClient:      c.http,
		HTTPHeader:      c.opts.HTTPHeader,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, nil, httpError(rawURL, resp)
		}
		return nil, nil, dialError(rawURL, err)
	}
	rawMu.Lock()
	defer rawMu.Unlock()
	return ws, raw, nil
}

// dialError says in one sentence why a dial failed and what to check.
func dialError(raw string, err error) error {
	host := raw
	if u, perr := url.Parse(raw); perr == nil {
		host = u.Host
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &sentence{fmt.Sprintf("netclient: cannot connect to %s: connection refused; is the server running and listening on %s?", raw, host), ErrUnreachable}
	case errors.As(err, &dnsErr):
		return &sentence{fmt.Sprintf("netclient: cannot connect to %s: no such host %q; check the host name", raw, dnsErr.Name), ErrUnreachable}
	}
	if e := timeoutError(raw, err); e != nil {
		return e
	}
	return fmt.Errorf("netclient: cannot connect to %s: %w", raw, unwrapDial(err))
}

// unwrapDial drops coder/websocket's and net/http's wrappers, which repeat
// the URL and "failed to" for every layer.
func unwrapDial(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	return err
}

// httpError describes a response that refused the upgrade.
func httpError(raw string, resp *http.Response) *HTTPError {
	e := &HTTPError{URL: raw, StatusCode: resp.StatusCode}
	if resp.Body != nil {
		// coder/websocket keeps the first 1024 bytes of the body.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		e.Message = strings.TrimSpace(strings.ToValidUTF8(string(b), ""))
		if i := strings.IndexByte(e.Message, '\n'); i >= 0 {
			e.Message = e.Message[:i]
		}
		e.Message = truncate(e.Message, 200)
	}
	return e
}

// eofClient returns hc (or the default client) with a transport whose
// connections are eofconn.Conns. A client whose transport is not an
// *http.Transport is returned as it is, without the check.
func eofClient(hc *http.Client) *http.Client {
	base := http.DefaultTransport
	if hc != nil && hc.Transport != nil {
		base = hc.Transport
	}
	t, ok := base.(*http.Transport)
	if !ok {
		return hc
	}
	t = t.Clone()
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return eofconn.Wrap(c), nil
	}
	out := &http.Client{}
	if hc != nil {
		*out = *hc
	}
	out.Transport = t
	return out
}
