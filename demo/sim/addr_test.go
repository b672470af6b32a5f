package sim_test

import (
	"net"
	"os"
	"testing"

	"github.com/ebisync/ebisync/demo/sim"
)

func TestURLs(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		addr          string
		local, shared string
	}{
		{"[::]:8080", "ws://127.0.0.1:8080/sync", "ws://" + net.JoinHostPort(host, "8080") + "/sync"},
		{"0.0.0.0:8080", "ws://127.0.0.1:8080/sync", "ws://" + net.JoinHostPort(host, "8080") + "/sync"},
		{"127.0.0.1:9000", "ws://127.0.0.1:9000/sync", "ws://127.0.0.1:9000/sync"},
		{"[::1]:9000", "ws://[::1]:9000/sync", "ws://[::1]:9000/sync"},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		local, shared := sim.URLs(addr)
		if local != tc.local || shared != tc.shared {
			t.Errorf("URLs(%s) = %s, %s; want %s, %s", tc.addr, local, shared, tc.local, tc.shared)
		}
	}
}
