#!/bin/sh
# results.sh runs the published benchmark suite COUNT times (default 3)
# and writes, from that run alone:
#
#   benchmarks/results.txt  the raw go test -bench output (benchstat reads it)
#   benchmarks/RESULTS.md   every figure, its same-run baseline, the ratio, the machine
#   benchmarks/clients.png  server CPU and bytes per client against client count
#
# About 10 minutes per COUNT on 2 cores. SHORT=1 passes -short (skips
# 2 000 clients and shortens the windows); EBISYNC_CPC_CLIENTS=100,500
# chooses BenchmarkClientsPerCore's client counts.
set -eu
cd "$(dirname "$0")/.."
count=${COUNT:-3}
short=""
if [ "${SHORT:-}" = 1 ]; then short="-short"; fi
out=benchmarks/results.txt
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.run" "$tmp.cmds"' EXIT

run() {
	echo "go test ./benchmarks -run '^\$' $* -count $count $short" >>"$tmp.cmds"
	if ! go test ./benchmarks -run '^$' "$@" -count "$count" $short -timeout 120m >"$tmp.run" 2>&1; then
		cat "$tmp.run"
		exit 1
	fi
	cat "$tmp.run"
	cat "$tmp.run" >>"$tmp"
}
: >"$tmp.cmds"
echo "# go version $(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)" >"$tmp"
run -bench 'ClientsPerCore' -benchtime 1x
run -bench 'Idle$' -benchtime 1x
run -bench 'IdleServer' -benchtime 300x
run -bench 'ClientApply' -benchtime 300x
run -bench 'Compression' -benchtime 100x
mv "$tmp" "$out"
cmds=$(cat "$tmp.cmds")
rm -f "$tmp.cmds"
cd benchmarks/report
go run . -in ../results.txt -md ../RESULTS.md -chart ../clients.png -command "$cmds"
echo "wrote benchmarks/results.txt, benchmarks/RESULTS.md and benchmarks/clients.png"
