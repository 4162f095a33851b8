#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: table-bench against one table-server and against
# Redis (90% get / 10% put), then one server against chains of 1 and 3
# (100% put), several runs each; prints the medians as markdown tables.
#
# usage: scripts/bench.sh [options]     (scripts/bench.sh --help)
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/bench.sh [options]

Builds the release binaries, starts its own table-server, Redis server and (for
the chain runs) ZooKeeper plus chains through scripts/chain.sh, all on loopback,
runs table-bench, stops everything it started by PID, and prints markdown tables
of the medians on stdout (progress on stderr, raw JSON lines in --out).

options:
  --runs N                runs of each configuration; the median is reported (default 3)
  --duration S            measured seconds of each run (default 10)
  --clients "A B ..."     connection counts of the server-vs-Redis runs (default "1 16 50 200")
  --chain-clients "A B"   connection counts of the chain runs (default "16 50")
  --keys K                key space (default 10000)
  --value-size B          value bytes (default 100)
  --skip-redis            no server-vs-Redis section
  --skip-chain            no chain section (needs ZooKeeper: Debian package zookeeper)
  --out DIR               where the raw results go (default target/bench)
  --quiet-wait S          before each run, wait up to S seconds for the machine to be idle
                          (other processes under 10% of the CPUs), then run anyway (default 900)
  --help                  this text

needs: redis-server (Debian package redis-server) unless --skip-redis, and /usr/bin/time
(Debian package time). The machine should be otherwise idle: before each run the script
waits for that (--quiet-wait), and a run during which other processes took more than 5%
of the CPUs is done again (up to 3 times); the last column says how much they took.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=3
duration=10
clients_list="1 16 50 200"
chain_clients_list="16 50"
keys=10000
value_size=100
skip_redis=false
skip_chain=false
out=$repo/target/bench
quiet_wait=900
readonly OTHERS_PERCENT_MAX=5
readonly ATTEMPTS_MAX=3

while (($# > 0)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --clients) clients_list=$2; shift 2 ;;
    --chain-clients) chain_clients_list=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --value-size) value_size=$2; shift 2 ;;
    --skip-redis) skip_redis=true; shift ;;
    --skip-chain) skip_chain=true; shift ;;
    --out) out=$2; shift 2 ;;
    --quiet-wait) quiet_wait=$2; shift 2 ;;
    --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --runs must be a positive number" >&2; exit 2; }

target_dir=${CARGO_TARGET_DIR:-$repo/target}
bench_bin=$target_dir/release/table-bench
server_bin=$target_dir/release/table-server
# Our own chain state, so a chain the user runs with scripts/chain.sh is left alone.
export CHAIN_DIR=$out/chain
results=$out/results.jsonl

log() {
  echo "bench.sh: $*" >&2
}

# ---- what we start, stopped by PID on exit ----

server_pid=""
server=""
redis_pid=""
redis=""
chain_up=false

# stop_pid <pid>: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_pid() {
  local pid=$1 tenths=0
  [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && ((tenths++ < 100)); do
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$server_pid"
  stop_pid "$redis_pid"
  if $chain_up; then
    "$repo/scripts/chain.sh" down >&2 || true
  fi
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap stops what it started.
trap 'exit 130' INT TERM

# start_server: a standalone table-server on a port it picks; sets server_pid
# and server (its address). Not in a subshell: the PID must reach cleanup.
start_server() {
  local log_file=$out/table-server.log tenths=0 address=""
  "$server_bin" 0 1024 >"$log_file" 2>&1 </dev/null &
  server_pid=$!
  until [[ -n $address ]]; do
    kill -0 "$server_pid" 2>/dev/null || { log "table-server exited:"; cat "$log_file" >&2; exit 1; }
    ((tenths++ < 200)) || { log "table-server did not start in 20 s"; exit 1; }
    sleep 0.1
    address=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$log_file" | head -n 1)
  done
  server=$address
}

# start_redis: a Redis without persistence on a free port; sets redis_pid and
# redis (its address).
start_redis() {
  local port tenths=0
  for port in $(shuf --input-range=20000-60000 --head-count=50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >"$out/redis.log" 2>&1 </dev/null &
  redis_pid=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do
    kill -0 "$redis_pid" 2>/dev/null || { log "redis-server exited:"; cat "$out/redis.log" >&2; exit 1; }
    ((tenths++ < 100)) || { log "redis-server did not answer in 10 s"; exit 1; }
    sleep 0.1
  done
  redis=127.0.0.1:$port
}

# ---- runs and medians ----

# busy_percent: how busy all CPUs were over the last second (0-100), from /proc/stat.
busy_percent() {
  local first second
  first=$(head -n 1 /proc/stat)
  sleep 1
  second=$(head -n 1 /proc/stat)
  awk -v first="$first" -v second="$second" 'BEGIN {
    split(first, a); split(second, b)
    for (i = 2; i <= 9; i++) { total += b[i] - a[i] }
    idle = (b[5] - a[5]) + (b[6] - a[6])
    print (total > 0) ? int(100 * (total - idle) / total) : 0 }'
}

# wait_quiet: a benchmark on 2 cores means nothing while something else is
# using them; waits (bounded) until the machine is idle and says so if not.
wait_quiet() {
  local busy waited=0
  busy=$(busy_percent)
  while ((busy >= 10)); do
    if ((waited >= quiet_wait)); then
      log "WARNING: the machine is still ${busy}% busy after ${waited} s; running anyway"
      return 0
    fi
    ((waited % 60 == 0)) && log "machine ${busy}% busy (other processes); waiting for it to be idle"
    sleep 4
    waited=$((waited + 5))
    busy=$(busy_percent)
  done
}

# machine_ticks: busy and total CPU jiffies of the machine so far; steal
# counts as busy (the hypervisor gave that time to someone else).
machine_ticks() {
  awk 'NR == 1 { for (i = 2; i <= 9; i++) total += $i; print total - $5 - $6, total }' /proc/stat
}

# our_ticks: CPU jiffies used so far by the servers (and ZooKeeper) this script started.
our_ticks() {
  local pid sum=0
  for pid in $server_pid $redis_pid $(cat "$CHAIN_DIR"/server-*.pid "$CHAIN_DIR"/zookeeper.pid 2>/dev/null); do
    [[ -r /proc/$pid/stat ]] && sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
  done
  echo "$sum"
}

# bench_run <label> <mix> <clients> <target args...>: one run, tagged with the
# label and with the share of the CPUs other processes used meanwhile
# (machine busy time less ours), appended to the results. A run disturbed by
# more than $OTHERS_PERCENT_MAX % is done again, up to $ATTEMPTS_MAX times.
bench_run() {
  local label=$1 mix=$2 clients=$3 json attempt others busy_before total_before ours_before busy_after \
    total_after ours_after bench_ticks
  shift 3
  for attempt in $(seq 1 "$ATTEMPTS_MAX"); do
    wait_quiet
    read -r busy_before total_before < <(machine_ticks)
    ours_before=$(our_ticks)
    json=$(/usr/bin/time --output="$out/time.txt" --format="%U %S" "$bench_bin" "$@" --clients "$clients" \
      --duration "$duration" --keys "$keys" --value-size "$value_size" --mix "$mix" --json \
      2>>"$out/bench.log" | tail -n 1)
    read -r busy_after total_after < <(machine_ticks)
    ours_after=$(our_ticks)
    bench_ticks=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($1 + $2) * hz }' "$out/time.txt")
    others=$((100 * (busy_after - busy_before - (ours_after - ours_before) - bench_ticks) /
      (total_after - total_before)))
    ((others < 0)) && others=0
    ((others <= OTHERS_PERCENT_MAX)) && break
    log "$label, $clients clients: other processes used ${others}% of the CPUs (attempt $attempt)"
  done
  echo "{\"label\":\"$label\",\"others_percent\":$others,${json#\{}" >>"$results"
  log "$label, $clients clients: $(field ops_per_sec <<<"$json") ops/s, p99 $(field p99 <<<"$json") µs," \
    "others ${others}%"
}

# field <name>: the number after "name": in the JSON lines on stdin.
field() {
  sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"
}

# median <label> <clients> <field>: median of that field over the runs.
median() {
  grep -F "\"label\":\"$1\"" "$results" | grep -F "\"clients\":$2," | field "$3" | sort -g |
    awk '{ values[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print values[(NR + 1) / 2];
      else print (values[NR / 2] + values[NR / 2 + 1]) / 2 }'
}

# total <label> <clients> <field>: sum of that field over the runs.
total() {
  grep -F "\"label\":\"$1\"" "$results" | grep -F "\"clients\":$2," | field "$3" |
    awk '{ sum += $1 } END { print sum + 0 }'
}

# largest <label> <clients> <field>: largest value of that field over the runs.
largest() {
  grep -F "\"label\":\"$1\"" "$results" | grep -F "\"clients\":$2," | field "$3" | sort -g | tail -n 1
}

# table_row <label> <clients> [<name>]: one markdown row of medians (errors: the
# total; others: the largest share of the CPUs other processes took during a run).
table_row() {
  printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "${3:-$1}" "$2" \
    "$(median "$1" "$2" ops_per_sec)" "$(median "$1" "$2" p50)" "$(median "$1" "$2" p90)" \
    "$(median "$1" "$2" p99)" "$(median "$1" "$2" p999)" "$(total "$1" "$2" errors)" \
    "$(largest "$1" "$2" others_percent)"
}

table_header() {
  echo "| target | clients | ops/s | p50 µs | p90 µs | p99 µs | p99.9 µs | errors | others' CPU % |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
}

# ---- main ----

mkdir -p "$out"
: >"$results"
: >"$out/bench.log"
log "building (cargo build --release --bins)"
(cd "$repo" && cargo build --release --bins --quiet)

echo "## Machine"
echo
echo "- CPUs (nproc): $(nproc); model: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
echo "- RAM: $(free -h | awk '/^Mem:/ { print $2 }'); kernel $(uname -r)"
echo "- $(rustc --version); $(redis-server --version 2>/dev/null | cut -d' ' -f1-3 || echo 'no redis-server')"
echo "- each configuration: $runs runs of $duration s (after 1 s warm-up), $keys keys, $value_size-byte values;"
echo "  each cell is the median of the runs, per column; errors: all runs; others' CPU %: the most that"
echo "  other processes took of the CPUs during one run (a run over 5% is repeated, up to 3 times)"
echo

start_server
log "table-server on $server (PID $server_pid)"

if ! $skip_redis; then
  start_redis
  log "redis-server on $redis (PID $redis_pid)"
  for clients in $clients_list; do
    for _ in $(seq 1 "$runs"); do
      bench_run server 90:10:0 "$clients" --server "$server"
      bench_run redis 90:10:0 "$clients" --redis "$redis"
    done
  done
  echo "## One table-server vs Redis: 90% get, 10% put"
  echo
  table_header
  for clients in $clients_list; do
    table_row server "$clients"
    table_row redis "$clients"
  done
  echo
  stop_pid "$redis_pid"
  redis_pid=""
fi

if ! $skip_chain; then
  for clients in $chain_clients_list; do
    for _ in $(seq 1 "$runs"); do
      bench_run server-puts 0:100:0 "$clients" --server "$server"
    done
  done
  # Alone on the machine while the chains run.
  stop_pid "$server_pid"
  server_pid=""
  for length in 1 3; do
    chain_up=true
    "$repo/scripts/chain.sh" up "$length" >&2
    zookeeper=127.0.0.1:$(cat "$CHAIN_DIR/zookeeper.port")
    for clients in $chain_clients_list; do
      for _ in $(seq 1 "$runs"); do
        bench_run "chain-$length" 0:100:0 "$clients" --zk "$zookeeper"
      done
    done
    "$repo/scripts/chain.sh" down >&2
    chain_up=false
  done
  echo "## One server vs chains of 1 and 3 (through ZooKeeper): 100% put"
  echo
  table_header
  for clients in $chain_clients_list; do
    table_row server-puts "$clients" server
    table_row chain-1 "$clients" "chain of 1"
    table_row chain-3 "$clients" "chain of 3"
  done
  echo
fi
log "raw results: $results"
