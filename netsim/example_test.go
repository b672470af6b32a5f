package netsim_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/ebisync/ebisync/netsim"
)

func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}))
	defer srv.Close()

	// 100 ms of round trip between the client and the server.
	p, err := netsim.Listen(srv.Listener.Addr().String(), &netsim.Options{Latency: 100 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get(p.URL(srv.URL + "/far/away"))
	if err != nil {
		panic(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		panic(err)
	}
	fmt.Println(string(body))
	fmt.Println("took at least 100ms:", time.Since(start) >= 100*time.Millisecond)
	// Output:
	// hello from /far/away
	// took at least 100ms: true
}
