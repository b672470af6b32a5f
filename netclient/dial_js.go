//go:build js

package netclient

import (
	"context"
	"fmt"
	"net"

	"github.com/coder/websocket"
)

// prepareDial does nothing in a browser, which makes the connections.
func (c *Client) prepareDial() {}

// dial opens the WebSocket to rawURL through the browser's WebSocket API.
// A browser sends no headers of the page's choosing with it, so
// Options.Token travels in the URL's TokenParam query parameter (which
// plugin.BearerToken reads), and Options.HTTPHeader and HTTPClient are not
// used; the browser sends the page's Origin and its cookies for the
// server's site. Compression is the browser's to negotiate, and the server
// declines it.
//
// The browser does not say why a connection failed: a server that refused
// the upgrade (HTTP 401, 403, 429, 503) and one that is not there are both
// ErrUnreachable, and there is no network connection to return.
func (c *Client) dial(ctx context.Context, rawURL string) (*websocket.Conn, net.Conn, error) {
	ws, _, err := websocket.Dial(ctx, tokenURL(rawURL, c.opts.Token), nil)
	if err != nil {
		// err names the URL with the token in it: it is not passed on.
		if e := timeoutError(rawURL, err); e != nil {
			return nil, nil, e
		}
		return nil, nil, &sentence{fmt.Sprintf("netclient: cannot connect to %s: the browser could not open the WebSocket; "+
			"is the server running, and does it accept this page's origin and credentials?", rawURL), ErrUnreachable}
	}
	return ws, nil, nil
}
