#!/usr/bin/env bash
# What more cores would buy the tunnel: iperf3 through `burrow server` + two daemons on
# loopback with every process on one CPU (taskset), then unpinned on all of them, beside the
# busy time of the whole machine per GiB. If two CPUs move about twice what one does and the
# machine is busy throughout, the tunnel is CPU-bound as a whole, and spreading a daemon's
# crypto over threads only moves work between busy cores; idle time with two CPUs is what
# such threads could use.
#
#   bash tests/bench/cores.sh [BURROW_BINARY] [SECONDS] [ROUNDS]
#   (defaults: target/release/burrow, 8, 2; build it with `cargo build --release -p burrow`)
#
# Figures, never a pass/fail: CI does not run this. Needs iperf3 and taskset (util-linux).
set -euo pipefail
BIN=${1:-target/release/burrow}
SECS=${2:-8}
ROUNDS=${3:-2}
for p in iperf3 taskset python3 "$BIN"; do command -v "$p" >/dev/null || [ -x "$p" ] || { echo "missing: $p" >&2; exit 2; }; done
NCPU=$(nproc)
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
"$BIN" keygen --out "$DIR/server.key" >/dev/null 2>&1
"$BIN" server --listen 127.0.0.1:25400 --key "$DIR/server.key" --token tok --netcheck-udp off >"$DIR/server.out" 2>"$DIR/server.err" &
PIDS+=($!)
SERVER=$!
for _ in $(seq 50); do grep -q "server public key:" "$DIR/server.out" 2>/dev/null && break; sleep 0.1; done
KEY=$(grep "server public key:" "$DIR/server.out" | awk '{print $NF}')
iperf3 -s -p 25401 -B 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
IPERF_S=$!
common=(--server 127.0.0.1:25400 --server-key "$KEY" --token tok --udp 127.0.0.1:0)
"$BIN" expose /bench/cores 127.0.0.1:25401 "${common[@]}" --state-dir "$DIR/a" >/dev/null 2>"$DIR/a.err" &
PIDS+=($!)
EXPOSE=$!
"$BIN" connect /bench/cores 127.0.0.1:25402 "${common[@]}" --state-dir "$DIR/b" >/dev/null 2>"$DIR/b.err" &
PIDS+=($!)
CONNECT=$!
for _ in $(seq 100); do grep -q "listening on" "$DIR/b.err" 2>/dev/null && break; sleep 0.1; done
iperf3 -c 127.0.0.1 -p 25402 -t 1 >/dev/null 2>&1 || true   # warm-up: the tunnel is up

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
cpu_of() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
one_run() { # $1: label, $2: CPU list for every process ("" = unpinned)
    local cpus=$1
    if [ -n "$cpus" ]; then
        for p in $SERVER $IPERF_S $EXPOSE $CONNECT; do taskset -a -p -c "$cpus" "$p" >/dev/null; done
    else
        for p in $SERVER $IPERF_S $EXPOSE $CONNECT; do taskset -a -p -c "0-$((NCPU - 1))" "$p" >/dev/null; done
    fi
    local m0 e0 c0 m1 e1 c1 out
    m0=$(busy); e0=$(cpu_of $EXPOSE); c0=$(cpu_of $CONNECT)
    if [ -n "$cpus" ]; then
        out=$(taskset -c "$cpus" iperf3 -c 127.0.0.1 -p 25402 -t "$SECS" -J)
    else
        out=$(iperf3 -c 127.0.0.1 -p 25402 -t "$SECS" -J)
    fi
    m1=$(busy); e1=$(cpu_of $EXPOSE); c1=$(cpu_of $CONNECT)
    python3 - "$out" "$((m1 - m0))" "$((e1 - e0))" "$((c1 - c0))" "$hz" "$SECS" <<'PY'
import json, sys
out = json.loads(sys.argv[1])["end"]["sum_received"]
machine, expose, connect, hz, secs = (float(x) for x in sys.argv[2:7])
gib = out["bytes"] / 2**30
print(f"{out['bytes'] / out['seconds'] / 1e6:8.0f} {expose / hz / gib:8.2f} {connect / hz / gib:8.2f} "
      f"{machine / hz / gib:8.2f} {machine / hz / secs:9.2f}")
PY
}
echo "iperf3 -c through the tunnel, $SECS s per run, $ROUNDS rounds; CPU-s/GiB from /proc; $NCPU CPUs"
printf "%-5s %-22s %8s %8s %8s %8s %9s\n" round placement "MB/s" expose connect machine "CPUs busy"
for r in $(seq "$ROUNDS"); do
    for placement in "0" ""; do
        label=${placement:-unpinned}
        [ -n "$placement" ] && label="taskset -c $placement"
        printf "%-5s %-22s " "$r" "$label"
        one_run "$placement"
    done
done
echo "command: bash tests/bench/cores.sh $*"
