#!/usr/bin/env bash
# iperf3 -u through a burrow UDP tunnel on loopback: prints iperf3's loss at a given rate.
#
#   bash tests/bench/iperf_udp.sh [BURROW_BINARY] [RATE] [SECONDS] [DATAGRAM_BYTES]
#   (defaults: target/release/burrow, 100M, 5, 1000; build it with `cargo build --release -p burrow`)
#
# One `burrow server`, a daemon exposing `iperf3 -s` twice (TCP for iperf3's control
# connection, UDP for its datagrams; both on 127.0.0.1:25201), a daemon connecting both on
# 127.0.0.1:25202, then `iperf3 -u -b RATE -c 127.0.0.1 -p 25202`, and the same run direct to
# 25201 for comparison. Prints the receiver's line of each (lost/total datagrams). Timing and
# loss are figures, never a pass/fail: CI does not run this. Every child ends with the script.
set -euo pipefail
BIN=${1:-target/release/burrow}
RATE=${2:-100M}
SECS=${3:-5}
LEN=${4:-1000}   # datagram size: must fit the tunnel's datagram payload (oversize ones are dropped and counted)
for p in iperf3 "$BIN"; do command -v "$p" >/dev/null || [ -x "$p" ] || { echo "missing: $p" >&2; exit 2; }; done
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
"$BIN" keygen --out "$DIR/server.key" >/dev/null
"$BIN" server --listen 127.0.0.1:25200 --key "$DIR/server.key" --token tok --netcheck-udp off >"$DIR/server.out" 2>"$DIR/server.err" &
PIDS+=($!)
for _ in $(seq 50); do grep -q "server public key:" "$DIR/server.out" 2>/dev/null && break; sleep 0.1; done
KEY=$(grep "server public key:" "$DIR/server.out" | awk '{print $NF}')
iperf3 -s -p 25201 -B 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
common="server = \"127.0.0.1:25200\"\nserver_key = \"$KEY\"\ntoken = \"tok\"\nudp = \"127.0.0.1:0\"\n"
printf "$common""state_dir = \"$DIR/a\"\n[[expose]]\nname = \"/bench/iperf\"\ntarget = \"127.0.0.1:25201\"\n[[expose]]\nname = \"/bench/iperf-udp\"\ntarget = \"127.0.0.1:25201\"\nprotocol = \"udp\"\n" >"$DIR/a.toml"
printf "$common""state_dir = \"$DIR/b\"\n[[connect]]\nname = \"/bench/iperf\"\nlisten = \"127.0.0.1:25202\"\n[[connect]]\nname = \"/bench/iperf-udp\"\nlisten = \"127.0.0.1:25202\"\nprotocol = \"udp\"\n" >"$DIR/b.toml"
"$BIN" daemon -c "$DIR/a.toml" 2>"$DIR/a.err" &
PIDS+=($!)
"$BIN" daemon -c "$DIR/b.toml" 2>"$DIR/b.err" &
PIDS+=($!)
sleep 2
echo "iperf3 -u -b $RATE -t $SECS, $LEN-byte datagrams (receiver: lost/total):"
for port in 25201 25202; do
    what=$([ $port = 25201 ] && echo "direct " || echo "tunnel ")
    out=$(timeout $((SECS + 20)) iperf3 -u -b "$RATE" -t "$SECS" -l "$LEN" -c 127.0.0.1 -p $port 2>&1 || true)
    line=$(echo "$out" | grep receiver || echo "no result: $(echo "$out" | tail -2)")
    echo "$what $line"
done
