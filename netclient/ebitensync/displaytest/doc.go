// Package displaytest runs package ebitensync's tests where a display
// exists, and lets `go test ./...` pass where none does.
//
// ebitensync imports Ebitengine, which on Linux panics while initialising
// when there is no display, before any test can skip. So ebitensync's test
// files carry the build tag ebisync_display, and without it the package
// has no tests. The test here, which does not import Ebitengine, runs
//
//	go test -tags ebisync_display github.com/ebisync/ebisync/netclient/ebitensync
//
// with DISPLAY, or under xvfb-run, and skips when neither is available
// unless EBISYNC_REQUIRE_DISPLAY=1 (then it fails). To run them directly:
//
//	xvfb-run -a go test -tags ebisync_display ./netclient/ebitensync
package displaytest
