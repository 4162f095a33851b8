#!/usr/bin/env bash
# Memory benchmarks of the limits (issue 13); no throughput is measured. Each section
# starts its own table-server (and Redis) on a free port, fills it with table-bench,
# reads the server's memory from /proc/<pid>/status, and stops what it started by PID.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/bench-memory.sh [--sections "flood gettable getkeys"] [--out DIR]

sections:
  flood     RSS of a server at --max-memory 1gb after a flood of 100-byte puts (until
            refused), and of Redis at maxmemory 1gb, noeviction (if redis-server is installed)
  gettable  RSS peak of a server holding a 1 GiB table (1,048,576 values of 1 KiB) while
            three table-client gettable run at once, against its RSS before
  getkeys   table-client getkeys of 10,000,000 keys: time, and the server's RSS growth

options:
  --sections LIST   which sections, in order (default all three)
  --flood-keys K    key space of the flood (default 8000000: more than fit in 1 GiB)
  --getkeys-keys K  keys of the getkeys section (default 10000000)
  --out DIR         where logs and results.md go (default target/bench/memory)
  --help            this text

The results table is printed and written to DIR/results.md.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/table-server.sh
source "$repo/scripts/lib/table-server.sh"
sections="flood gettable getkeys"
flood_keys=8000000
getkeys_keys=10000000
out=$repo/target/bench/memory
while (($#)); do
  case $1 in
    --sections) sections=$2; shift 2 ;;
    --flood-keys) flood_keys=$2; shift 2 ;;
    --getkeys-keys) getkeys_keys=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --help) usage; exit 0 ;;
    *) echo "bench-memory.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

mkdir -p "$out"
results=$out/results.md
: >"$results"
bin=$repo/target/release
(cd "$repo" && cargo build --release --bins --quiet)

started_pids=()
cleanup() {
  local pid
  for pid in "${started_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[bench-memory] $*" >&2; }
row() { echo "$*" | tee -a "$results"; }

# status_kb <pid> <field>: a kB line of /proc/<pid>/status (VmRSS, VmHWM).
status_kb() { awk -v field="$2:" '$1 == field { print $2 }' "/proc/$1/status"; }

# reset_peak <pid>: makes VmHWM start again from the current RSS.
reset_peak() { echo 5 >"/proc/$1/clear_refs"; }

mib() { awk -v kb="$1" 'BEGIN { printf "%.1f MiB", kb / 1024 }'; }

# start_server <name> <options...>: a standalone table-server on a port it picks; sets
# server_pid and server (its address).
start_server() {
  local name=$1 log_file
  shift
  log_file=$out/$name.log
  local address_file=$out/$name.address
  rm -f "$address_file"
  "$bin/table-server" 0 1024 --max-clients-per-host 100000 --address-file "$address_file" "$@" \
    >"$log_file" 2>&1 </dev/null &
  server_pid=$!
  started_pids+=("$server_pid")
  server=$(wait_listening "$server_pid" "$log_file" "$address_file") || exit 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# fill <target args...> -- <keys> <value bytes> <mix>: table-bench fills key:0..key:<keys-1>
# (16 clients; a client stops filling after 100 refused puts), then runs 0.1 s unmeasured
# of <mix>. The JSON line goes to $out/fill.json.
fill() {
  local target=() keys value_size mix
  while [[ $1 != -- ]]; do target+=("$1"); shift; done
  keys=$2 value_size=$3 mix=$4
  "$bin/table-bench" "${target[@]}" --clients 16 --keys "$keys" --value-size "$value_size" \
    --mix "$mix" --warmup 0 --duration 0.1 --json >"$out/fill.json" 2>>"$out/bench.log" || true
}

stat_field() { "$bin/table-client" --server "$server" stats | awk -v name="$1:" '$1 == name { print $2 }'; }

flood() {
  row ""
  row "## RSS after a flood of puts at a 1 GiB memory limit"
  row ""
  row "| target | keys held | counted used memory | RSS | peak RSS |"
  row "|---|---|---|---|---|"
  log "flood: table-server --max-memory 1gb, $flood_keys keys of 100 B"
  start_server flood --max-memory 1gb
  fill --server "$server" -- "$flood_keys" 100 0:1:0
  row "| table-server --max-memory 1gb | $(stat_field keys) | $(stat_field used_memory) B |" \
    "$(mib "$(status_kb "$server_pid" VmRSS)") | $(mib "$(status_kb "$server_pid" VmHWM)") |"
  stop "$server_pid"
  if ! command -v redis-server >/dev/null; then
    row "| Redis | not installed | | | |"
    return
  fi
  local port redis_pid tenths=0
  port=$(awk 'BEGIN { srand(); print 20000 + int(rand() * 10000) }')
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --maxmemory 1gb --maxmemory-policy noeviction >"$out/redis.log" 2>&1 </dev/null &
  redis_pid=$!
  started_pids+=("$redis_pid")
  until redis-cli -p "$port" ping >/dev/null 2>&1; do
    kill -0 "$redis_pid" 2>/dev/null || { log "redis-server exited:"; cat "$out/redis.log" >&2; exit 1; }
    ((tenths++ < 100)) || { log "redis-server did not start in 10 s"; exit 1; }
    sleep 0.1
  done
  log "flood: redis-server maxmemory 1gb noeviction"
  fill --redis "127.0.0.1:$port" -- "$flood_keys" 100 0:1:0
  local used
  used=$(redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
  row "| redis-server maxmemory 1gb noeviction | $(redis-cli -p "$port" dbsize) | $used B |" \
    "$(mib "$(status_kb "$redis_pid" VmRSS)") | $(mib "$(status_kb "$redis_pid" VmHWM)") |"
  stop "$redis_pid"
}

gettable() {
  row ""
  row "## RSS peak during three concurrent gettables of a 1 GiB table"
  row ""
  row "| values held | RSS before (the table) | RSS peak during | growth | seconds for the three |"
  row "|---|---|---|---|---|"
  log "gettable: filling 1,048,576 values of 1 KiB"
  start_server gettable
  fill --server "$server" -- 1048576 1024 1:0:0
  local before peak begin seconds
  before=$(status_kb "$server_pid" VmRSS)
  reset_peak "$server_pid"
  begin=$(date +%s.%N)
  for _ in 1 2 3; do
    "$bin/table-client" --server "$server" --timeout-ms 120000 gettable | wc -l >>"$out/gettable-lines.txt" &
  done
  wait_for_jobs
  seconds=$(awk -v a="$begin" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  peak=$(status_kb "$server_pid" VmHWM)
  row "| $(stat_field keys) × 1 KiB | $(mib "$before") | $(mib "$peak") |" \
    "$(awk -v a="$before" -v b="$peak" 'BEGIN { printf "%.1f %%", 100 * (b - a) / a }') | $seconds |"
  log "lines printed by each gettable: $(tr '\n' ' ' <"$out/gettable-lines.txt")"
  stop "$server_pid"
}

getkeys() {
  row ""
  row "## getkeys of $getkeys_keys keys"
  row ""
  row "| keys | lines printed | seconds | server RSS before | server RSS peak during | growth |"
  row "|---|---|---|---|---|---|"
  log "getkeys: filling $getkeys_keys keys of 1 B"
  start_server getkeys
  fill --server "$server" -- "$getkeys_keys" 1 1:0:0
  local before peak begin seconds lines
  before=$(status_kb "$server_pid" VmRSS)
  reset_peak "$server_pid"
  begin=$(date +%s.%N)
  lines=$("$bin/table-client" --server "$server" --timeout-ms 120000 getkeys | wc -l)
  seconds=$(awk -v a="$begin" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  peak=$(status_kb "$server_pid" VmHWM)
  row "| $(stat_field keys) | $lines | $seconds | $(mib "$before") | $(mib "$peak") |" \
    "$(mib $((peak - before))) |"
  stop "$server_pid"
}

# wait_for_jobs: waits for this shell's background pipelines (the clients), not the servers.
wait_for_jobs() {
  local job
  for job in $(jobs -p); do
    [[ " ${started_pids[*]} " == *" $job "* ]] || wait "$job"
  done
}

for section in $sections; do
  case $section in
    flood | gettable | getkeys) "$section" ;;
    *) echo "bench-memory.sh: unknown section $section" >&2; exit 2 ;;
  esac
done
log "results in $results"
