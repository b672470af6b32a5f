package sim

import (
	"net"
	"os"
)

// URLs returns the sync URLs of a server listening on addr: local, to
// dial from this machine, and shared, to give to others. A listener on
// every interface (":8080") reports the address [::]:8080, which nobody
// can dial: local is then on 127.0.0.1, and shared uses the host's name.
// Otherwise both are addr's own.
func URLs(addr net.Addr) (local, shared string) {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		u := "ws://" + addr.String() + "/sync"
		return u, u
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		u := "ws://" + net.JoinHostPort(host, port) + "/sync"
		return u, u
	}
	local = "ws://" + net.JoinHostPort("127.0.0.1", port) + "/sync"
	shared = local
	if name, err := os.Hostname(); err == nil && name != "" {
		shared = "ws://" + net.JoinHostPort(name, port) + "/sync"
	}
	return local, shared
}
