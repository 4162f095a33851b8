#!/usr/bin/env bash
# Runs table-server under valgrind's memcheck, twice (standalone, then as a
# chain's head), through the workload in scripts/lib/server-workload.sh
# (shared with scripts/heaptrack.sh), and checks each leak report after a
# SIGTERM (a clean shutdown joins every thread).
#
# Fails when a workload answer is wrong, when the server does not shut down,
# when valgrind reports an error, or when any memory is definitely lost.
#
# usage: scripts/valgrind.sh [--keep-log] [--skip-chain]
set -euo pipefail

# tool_usage: what this script does, for --help (the lib adds the usage
# line and the options).
tool_usage() {
  cat <<'TEXT'
Runs target/release/table-server under valgrind memcheck with a client
workload, then SIGTERM, and checks the leak report (suppressions in
valgrind.supp); first standalone, then as a chain's head.
TEXT
}

# tool_check: valgrind must be installed (scripts/test.sh installs it).
tool_check() {
  command -v valgrind >/dev/null && return 0
  echo "valgrind.sh: valgrind is not installed: apt-get install valgrind (scripts/test.sh installs it)" >&2
  exit 1
}

# tool_start <name> <table-server arguments...>: valgrind runs the server in
# its own process, so the pid to signal is the pid to wait for.
tool_start() {
  local name=$1
  shift
  RUST_LOG=info valgrind \
    --leak-check=full \
    --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite \
    --suppressions="$repo/valgrind.supp" \
    --error-exitcode=99 \
    --num-callers=40 \
    --log-file="$work/$name.log" \
    "$server_bin" "$@" </dev/null 2>"$work/$name-server.log" &
  server_pid=$!
  tool_pid=$!
}

# tool_report <name> <server exit status>: valgrind's report in
# $work/<name>.log: no errors, nothing definitely lost, exit status 0.
tool_report() {
  local name=$1 server_status=$2 log definitely_lost error_count
  log=$work/$name.log
  echo
  echo "---- valgrind ($name): LEAK SUMMARY and ERROR SUMMARY ----"
  sed --quiet '/LEAK SUMMARY/,/suppressed:/p' "$log"
  grep --fixed-strings "All heap blocks were freed" "$log" || true
  grep --fixed-strings "ERROR SUMMARY" "$log" || fail "the valgrind log has no ERROR SUMMARY (is it complete?)"
  echo "--------------------------------------------------"

  definitely_lost=$(sed --quiet 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tr --delete ,)
  if [[ -z $definitely_lost ]]; then
    grep --quiet "All heap blocks were freed" "$log" || fail "the valgrind log has no leak summary"
    definitely_lost=0
  fi
  error_count=$(sed --quiet 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tr --delete ,)
  if ((definitely_lost != 0 || error_count != 0 || server_status != 0)); then
    # Show the loss records and error contexts to act on.
    sed --quiet '/HEAP SUMMARY/,$p' "$log" >&2
    fail "$name: definitely lost: $definitely_lost bytes, valgrind errors: $error_count, server exit status: $server_status"
  fi
  grep --quiet "are possibly lost" "$log" && echo "valgrind.sh: note: possibly-lost blocks are listed in $log"
  return 0
}

me=valgrind.sh
tool=valgrind
tool_verdict="no errors, no definite leaks"
# shellcheck source=lib/server-workload.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/server-workload.sh"
