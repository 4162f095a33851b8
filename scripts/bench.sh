#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: table-bench against one table-server and against
# Redis (90% get / 10% put), then one server against chains of 1 and 3
# (100% put), several runs each, then large values, idle connections and
# memory per key; prints the medians as markdown tables.
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
  --value-sizes "A B"     value sizes of the large-value section (default "1024 65536"; 50
                          clients, 90% get; keys: 10000, or 1000 for values over 16 KiB)
  --skip-values           no large-value section
  --idle N                idle connections held in the idle section (default 5000)
  --skip-idle             no idle-connection section
  --memory-keys K         keys of the memory section (default 1000000, 100-byte values)
  --skip-memory           no memory section
  --transfer-keys K       keys of the state-transfer section (default 1000000, 100-byte
                          values): a chain of 1 is filled, then a second server joins
  --skip-transfer         no state-transfer section (needs ZooKeeper)
  --tls-clients "A B"     connection counts of the TLS section (default "1 50"): one server and
                          Redis, each without and with TLS (certificates made with openssl)
  --skip-tls              no TLS section
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
# shellcheck source=lib/table-server.sh
source "$repo/scripts/lib/table-server.sh"
runs=3
duration=10
clients_list="1 16 50 200"
chain_clients_list="16 50"
keys=10000
value_size=100
skip_redis=false
skip_chain=false
value_sizes="1024 65536"
skip_values=false
idle=5000
skip_idle=false
memory_keys=1000000
transfer_keys=1000000
skip_transfer=false
skip_memory=false
tls_clients_list="1 50"
skip_tls=false
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
    --value-sizes) value_sizes=$2; shift 2 ;;
    --skip-values) skip_values=true; shift ;;
    --idle) idle=$2; shift 2 ;;
    --skip-idle) skip_idle=true; shift ;;
    --memory-keys) memory_keys=$2; shift 2 ;;
    --skip-memory) skip_memory=true; shift ;;
    --transfer-keys) transfer_keys=$2; shift 2 ;;
    --skip-transfer) skip_transfer=true; shift ;;
    --tls-clients) tls_clients_list=$2; shift 2 ;;
    --skip-tls) skip_tls=true; shift ;;
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
tls_server_pid=""
tls_redis_pid=""
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
  stop_pid "$tls_server_pid"
  stop_pid "$tls_redis_pid"
  if $chain_up; then
    "$repo/scripts/chain.sh" down >&2 || true
  fi
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap stops what it started.
trap 'exit 130' INT TERM

# start_server [options...]: a standalone table-server on a port it picks;
# sets server_pid and server (its address). Not in a subshell: the PID must
# reach cleanup.
start_server() {
  local log_file=$out/table-server.log address_file=$out/table-server.address
  rm -f "$address_file"
  # Every benchmark client comes from 127.0.0.1: no per-host limit.
  "$server_bin" 0 1024 --max-clients-per-host 100000 --address-file "$address_file" "$@" \
    >"$log_file" 2>&1 </dev/null &
  server_pid=$!
  server=$(wait_listening "$server_pid" "$log_file" "$address_file") || exit 1
}

# start_redis: a Redis without persistence on a free port; sets redis_pid and
# redis (its address). Ports are picked below the kernel's ephemeral range, so
# no outgoing connection holds one, and a port taken between the check and the
# bind ("Address already in use") is retried on another.
# With options (TLS: --tls-port and its files) they are added, and the plain
# port is the one the options name (see the TLS section).
start_redis() {
  local port tenths ephemeral_low attempt
  ephemeral_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range)
  for attempt in 1 2 3 4 5; do
    for port in $(shuf --input-range=20000-$((ephemeral_low - 1)) --head-count=50); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    done
    if (($# > 0)); then
      redis-server --port 0 --tls-port "$port" "$@" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no >"$out/redis.log" 2>&1 </dev/null &
    else
      redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        >"$out/redis.log" 2>&1 </dev/null &
    fi
    redis_pid=$!
    tenths=0
    until redis-cli -p "$port" ${1:+--tls --cacert "$out/tls/ca.pem"} ping >/dev/null 2>&1; do
      if ! kill -0 "$redis_pid" 2>/dev/null; then
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=""
        grep -q "Address already in use" "$out/redis.log" && continue 2
        log "redis-server exited:"; cat "$out/redis.log" >&2; exit 1
      fi
      ((tenths++ < 100)) || { log "redis-server did not answer in 10 s"; exit 1; }
      sleep 0.1
    done
    redis=127.0.0.1:$port
    return 0
  done
  log "redis-server found no free port in $attempt attempts:"; cat "$out/redis.log" >&2; exit 1
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
  for pid in $server_pid $redis_pid $tls_server_pid $tls_redis_pid $(cat "$CHAIN_DIR"/server-*.pid "$CHAIN_DIR"/zookeeper.pid 2>/dev/null); do
    [[ -r /proc/$pid/stat ]] && sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
  done
  echo "$sum"
}

# bench_run <label> <mix> <clients> <table-bench args...>: one run (the args
# come last, so they may override --keys and --value-size), tagged with the
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
    json=$(/usr/bin/time --output="$out/time.txt" --format="%U %S" "$bench_bin" --clients "$clients" \
      --duration "$duration" --keys "$keys" --value-size "$value_size" --mix "$mix" --json "$@" \
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

if ! $skip_tls; then
  # A CA and a certificate for 127.0.0.1 signed by it, for both servers.
  mkdir -p "$out/tls"
  (
    cd "$out/tls"
    key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${key[@]}" -keyout ca-key.pem -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
    openssl req "${key[@]}" -keyout key.pem -out request.csr -subj "/CN=bench server" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >extensions.cnf
    openssl x509 -req -in request.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 \
      -extfile extensions.cnf 2>/dev/null
  )
  plain_server=$server plain_server_pid=$server_pid
  start_server --tls-cert "$out/tls/cert.pem" --tls-key "$out/tls/key.pem" --tls-ca "$out/tls/ca.pem"
  tls_server=$server tls_server_pid=$server_pid
  server=$plain_server server_pid=$plain_server_pid
  start_redis
  plain_redis=$redis plain_redis_pid=$redis_pid
  start_redis --tls-cert-file "$out/tls/cert.pem" --tls-key-file "$out/tls/key.pem" \
    --tls-ca-cert-file "$out/tls/ca.pem" --tls-auth-clients no
  tls_redis=$redis tls_redis_pid=$redis_pid
  redis=$plain_redis redis_pid=$plain_redis_pid
  log "TLS: table-server on $tls_server, redis-server on $tls_redis"
  for clients in $tls_clients_list; do
    for _ in $(seq 1 "$runs"); do
      bench_run server-notls 90:10:0 "$clients" --server "$server"
      bench_run server-tls 90:10:0 "$clients" --server "$tls_server" --tls-ca "$out/tls/ca.pem"
      bench_run redis-notls 90:10:0 "$clients" --redis "$redis"
      bench_run redis-tls 90:10:0 "$clients" --redis "$tls_redis" --tls-ca "$out/tls/ca.pem"
    done
  done
  echo "## TLS: one table-server and Redis, without and with TLS: 90% get, 10% put"
  echo
  table_header
  for clients in $tls_clients_list; do
    for label in server-notls server-tls redis-notls redis-tls; do
      table_row "$label" "$clients"
    done
  done
  echo
  echo "| clients | server TLS / plain | Redis TLS / plain | server TLS / Redis TLS |"
  echo "|---:|---:|---:|---:|"
  for clients in $tls_clients_list; do
    awk -v c="$clients" -v s="$(median server-notls "$clients" ops_per_sec)" \
      -v st="$(median server-tls "$clients" ops_per_sec)" -v r="$(median redis-notls "$clients" ops_per_sec)" \
      -v rt="$(median redis-tls "$clients" ops_per_sec)" \
      'BEGIN { printf "| %s | %.2f | %.2f | %.2f |\n", c, st / s, rt / r, st / rt }'
  done
  echo
  stop_pid "$tls_server_pid"
  tls_server_pid=""
  stop_pid "$tls_redis_pid"
  tls_redis_pid=""
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
        bench_run "chain-$length" 0:100:0 "$clients" --zk "$zookeeper" --secret-file "$CHAIN_DIR/client.secret"
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
# rss_kb <pid> / threads_of <pid>: from /proc/<pid>/status.
rss_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

threads_of() {
  awk '/^Threads:/ { print $2 }' "/proc/$1/status"
}

# hold_idle <label> <pid> <target args...>: fills the keys, then a 16-client
# 90:10 run that also holds $idle idle connections; samples the server's RSS
# and threads while they are held and prints one markdown row (RSS before:
# after the fill).
hold_idle() {
  local label=$1 pid=$2 rss_before bench_pid rss_peak=0 threads_peak=0 rss threads json
  shift 2
  # Fill first, so the RSS growth is the idle connections' alone.
  "$bench_bin" --clients 16 --duration 0.5 --warmup 0 --keys "$keys" --value-size "$value_size" \
    --mix 1:0:0 "$@" >/dev/null 2>>"$out/bench.log"
  rss_before=$(rss_kb "$pid")
  "$bench_bin" --clients 16 --duration "$duration" --keys "$keys" --value-size "$value_size" --mix 90:10:0 \
    --no-fill --idle-connections "$idle" --json "$@" >"$out/idle.json" 2>>"$out/bench.log" &
  bench_pid=$!
  while kill -0 "$bench_pid" 2>/dev/null; do
    rss=$(rss_kb "$pid")
    threads=$(threads_of "$pid")
    ((rss > rss_peak)) && rss_peak=$rss
    ((threads > threads_peak)) && threads_peak=$threads
    sleep 0.5
  done
  wait "$bench_pid" || { log "table-bench with idle connections failed"; return 1; }
  json=$(tail -n 1 "$out/idle.json")
  echo "{\"label\":\"idle-$label\",\"rss_before_kb\":$rss_before,\"rss_peak_kb\":$rss_peak,${json#\{}" >>"$results"
  printf '| %s | %s | %s | %s kB | %s kB | %s | %.1f | %.0f |\n' "$label" "$idle" \
    "$(field idle_open <<<"$json")" "$rss_before" "$rss_peak" "$threads_peak" \
    "$(awk -v a="$rss_before" -v b="$rss_peak" -v n="$idle" 'BEGIN { print (b - a) / n }')" \
    "$(field ops_per_sec <<<"$json")"
}

# memory_row <label> <pid> <target args...>: RSS before and after filling
# $memory_keys keys of 100 bytes; one markdown row.
memory_row() {
  local label=$1 pid=$2 before after
  shift 2
  before=$(rss_kb "$pid")
  "$bench_bin" --clients 8 --keys "$memory_keys" --value-size 100 --duration 0.5 --warmup 0 --mix 1:0:0 \
    "$@" >/dev/null 2>>"$out/bench.log"
  after=$(rss_kb "$pid")
  printf '| %s | %s kB | %s kB | %.0f B |\n' "$label" "$before" "$after" \
    "$(awk -v a="$before" -v b="$after" -v n="$memory_keys" 'BEGIN { print (b - a) * 1024 / n }')"
}

if ! $skip_values; then
  [[ -n $server_pid ]] || start_server
  start_redis
  for size in $value_sizes; do
    size_keys=$keys
    ((size > 16384)) && size_keys=1000
    for _ in $(seq 1 "$runs"); do
      bench_run "server-$size" 90:10:0 50 --server "$server" --value-size "$size" --keys "$size_keys"
      bench_run "redis-$size" 90:10:0 50 --redis "$redis" --value-size "$size" --keys "$size_keys"
    done
  done
  echo "## Large values: 50 clients, 90% get, 10% put"
  echo
  table_header
  for size in $value_sizes; do
    table_row "server-$size" 50 "server, $size B"
    table_row "redis-$size" 50 "redis, $size B"
  done
  echo
  stop_pid "$redis_pid"
  redis_pid=""
fi

if ! $skip_idle; then
  # Fresh servers, so the RSS before is that of an idle, nearly empty server.
  stop_pid "$server_pid"
  start_server
  start_redis
  echo "## $idle idle connections held, plus 16 active clients (90% get)"
  echo
  echo "| target | idle | still open | RSS before | RSS peak | threads peak | kB per idle connection | active ops/s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  hold_idle server "$server_pid" --server "$server"
  hold_idle redis "$redis_pid" --redis "$redis"
  echo
  stop_pid "$redis_pid"
  redis_pid=""
fi

if ! $skip_memory; then
  stop_pid "$server_pid"
  start_server
  start_redis
  echo "## Memory: $memory_keys keys of 100 bytes"
  echo
  echo "| target | RSS before | RSS after | per key |"
  echo "|---|---:|---:|---:|"
  memory_row server "$server_pid" --server "$server"
  memory_row redis "$redis_pid" --redis "$redis"
  echo
fi
if ! $skip_transfer; then
  stop_pid "$server_pid"
  server_pid=""
  stop_pid "$redis_pid"
  redis_pid=""
  chain_up=true
  "$repo/scripts/chain.sh" up 1 >&2
  zookeeper=127.0.0.1:$(cat "$CHAIN_DIR/zookeeper.port")
  "$bench_bin" --zk "$zookeeper" --secret-file "$CHAIN_DIR/client.secret" --clients 8 \
    --keys "$transfer_keys" --value-size 100 --duration 0.5 \
    --warmup 0 --mix 1:0:0 >/dev/null 2>>"$out/bench.log"
  join_started=$(date +%s%N)
  # Returns once the joiner has announced itself ready.
  "$repo/scripts/chain.sh" add >&2
  join_ms=$((($(date +%s%N) - join_started) / 1000000))
  # The joiner logs "state transfer from <node> complete: <keys> keys at write <n> in <ms> ms";
  # the old tail logs how long sending it took.
  received=$(sed -n 's/.*state transfer from .* complete: \([0-9]*\) keys at write [0-9]* in \([0-9]*\) ms.*/\1 \2/p' \
    "$CHAIN_DIR/server-2.log" | tail -n 1)
  sent_ms=$(sed -n 's/.*state transfer to .* sent in \([0-9]*\) ms.*/\1/p' "$CHAIN_DIR/server-1.log" | tail -n 1)
  "$repo/scripts/chain.sh" down >&2
  chain_up=false
  [[ -n $received ]] || { log "the joiner logged no complete state transfer"; exit 1; }
  echo "{\"label\":\"transfer\",\"keys\":${received% *},\"received_ms\":${received#* },\"sent_ms\":${sent_ms:-null},\"join_ms\":$join_ms}" >>"$results"
  echo "## State transfer: $transfer_keys keys of 100 bytes to a joining server"
  echo
  echo "| keys transferred | snapshot streamed (old tail) | received and installed (joiner) | start of the joiner to ready |"
  echo "|---:|---:|---:|---:|"
  echo "| ${received% *} | ${sent_ms:-?} ms | ${received#* } ms | $join_ms ms |"
  echo
fi
log "raw results: $results"
