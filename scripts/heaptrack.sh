#!/usr/bin/env bash
# Runs table-server under heaptrack, twice (standalone, then as a chain's
# head), through the same workload as scripts/valgrind.sh (in
# scripts/lib/server-workload.sh), and prints each run's peak heap and what
# was still allocated at exit. Where valgrind.sh proves there are no memory
# errors or leaks, this shows where the memory goes: open a run's file
# with heaptrack_gui or `heaptrack --analyze` (kept with --keep-log).
#
# Fails when a workload answer is wrong, when the server does not shut down
# cleanly, or when heaptrack recorded nothing. Memory still allocated at exit
# does not fail it: heaptrack has no suppressions, and process-lifetime
# allocations (the logger, thread-locals of threads still running) count.
#
# usage: scripts/heaptrack.sh [--keep-log] [--skip-chain]
set -euo pipefail

# tool_usage: what this script does, for --help (the lib adds the usage
# line and the options).
tool_usage() {
  cat <<'TEXT'
Runs target/release/table-server under heaptrack with the valgrind.sh client
workload, then SIGTERM, and prints the peak heap and the memory leaked per
run; first standalone, then as a chain's head. Installs heaptrack with
apt-get when it is missing and this runs as root.
TEXT
}

# tool_check: heaptrack is installed, or installed now (as root, Debian).
tool_check() {
  command -v heaptrack >/dev/null && command -v heaptrack_print >/dev/null && return 0
  if ((EUID == 0)) && command -v apt-get >/dev/null; then
    echo "heaptrack.sh: installing heaptrack"
    DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends heaptrack ||
      { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends heaptrack; }
  fi
  command -v heaptrack >/dev/null && return 0
  echo "heaptrack.sh: heaptrack is not installed: apt-get install heaptrack" >&2
  exit 1
}

# Limit for the server to appear under heaptrack's wrapper script.
readonly SERVER_APPEAR_TENTHS=100

# tool_start <name> <table-server arguments...>: heaptrack's wrapper script
# runs the server as its child and writes $work/<name>.heaptrack.* when it
# exits; the server's pid is the one to signal, the wrapper's to wait for.
tool_start() {
  local name=$1 tenth
  shift
  RUST_LOG=info heaptrack --output "$work/$name.heaptrack" "$server_bin" "$@" \
    </dev/null >"$work/$name-heaptrack.out" 2>"$work/$name-server.log" &
  tool_pid=$!
  server_pid=""
  for ((tenth = 0; tenth < SERVER_APPEAR_TENTHS; tenth++)); do
    server_pid=$(pgrep --parent "$tool_pid" --exact table-server || true)
    [[ -n $server_pid ]] && return 0
    kill -0 "$tool_pid" 2>/dev/null || { cat "$work/$name-heaptrack.out" >&2; fail "heaptrack exited at once"; }
    sleep 0.1
  done
  fail "no table-server under heaptrack after $((SERVER_APPEAR_TENTHS / 10)) s"
}

# tool_report <name> <server exit status>: the peak heap and the leaks, from
# heaptrack_print.
tool_report() {
  local name=$1 server_status=$2 data summary
  ((server_status == 0)) || fail "$name: the server exited with status $server_status"
  data=$(find "$work" -maxdepth 1 -name "$name.heaptrack*" -print -quit)
  [[ -n $data ]] || { cat "$work/$name-heaptrack.out" >&2; fail "$name: heaptrack wrote no data file"; }
  heaptrack_print --file "$data" --print-leaks=1 --print-peaks=0 --print-allocators=0 \
    --print-temporary=0 >"$work/$name-heaptrack.txt" 2>&1 ||
    fail "$name: heaptrack_print failed (see $work/$name-heaptrack.txt)"
  summary=$(grep --extended-regexp "^(total runtime|calls to allocation functions|peak heap memory consumption|peak RSS|total memory leaked|suppressed leaks)" \
    "$work/$name-heaptrack.txt" || true)
  [[ $summary == *"peak heap memory consumption"* ]] || fail "$name: no peak heap in heaptrack's summary"
  echo
  echo "---- heaptrack ($name) ----"
  echo "$summary"
  echo "data: $data (heaptrack --analyze, or heaptrack_gui)"
  echo "---------------------------"
}

me=heaptrack.sh
tool=heaptrack
tool_verdict="peak heap and leaks printed above"
# shellcheck source=lib/server-workload.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/server-workload.sh"
