#!/usr/bin/env bash
# The write stall of a join: a chain of 1 holding K keys of 100 B (default
# 1,000,000) under a 16-client 100 % put load for 20 s; a second server joins
# at 6 s (state transfer, catch-up, hand-over). Prints table-bench's JSON
# line: its latency max is the longest write, the stall the join caused.
# Uses scripts/chain.sh (its own ZooKeeper and servers, stopped by PID on
# exit) with CHAIN_DIR=/tmp/chaintable-bench-join unless set.
#
#   scripts/bench-join.sh [--keys K] [--server-args "ARGS"]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
keys=1000000
server_args=
while (($#)); do
  case $1 in
    --keys) keys=$2; shift 2 ;;
    --server-args) server_args=$2; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "bench-join.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
export CHAIN_DIR=${CHAIN_DIR:-/tmp/chaintable-bench-join} CHAIN_SERVER_ARGS=$server_args
bench=${CARGO_TARGET_DIR:-$repo/target}/release/table-bench
bench_pid=
stop() {
  [[ -n $bench_pid ]] && kill "$bench_pid" 2>/dev/null
  "$repo/scripts/chain.sh" down >/dev/null 2>&1 || true
}
trap stop EXIT
"$repo/scripts/chain.sh" up 1 >/dev/null
zk=127.0.0.1:$(cat "$CHAIN_DIR/zookeeper.port")
export CHAINTABLE_SECRET_FILE=$CHAIN_DIR/client.secret
common=(--zk "$zk" --keys "$keys" --value-size 100 --clients 16 --mix 0:100:0)
"$bench" "${common[@]}" --duration 1 >/dev/null
"$bench" "${common[@]}" --no-fill --duration 20 --json >"$CHAIN_DIR/bench.out" 2>/dev/null &
bench_pid=$!
sleep 6
"$repo/scripts/chain.sh" add >/dev/null
wait "$bench_pid"
bench_pid=
tail -1 "$CHAIN_DIR/bench.out"
