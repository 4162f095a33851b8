#!/usr/bin/env bash
# Runs a local chain for trying things out: one ZooKeeper and N table-servers
# on loopback, started in the background and remembered (PIDs, ports, logs) in
# a state directory, so later calls can show, kill, add and stop them.
#
# usage: scripts/chain.sh up [N] [--chains K] [--durable] | status | kill <i> | add [<chain>] | restart | down
set -eEuo pipefail
# Whatever ends the script early says which command it was.
trap 'echo "chain.sh: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR

usage() {
  cat <<'EOF'
usage: scripts/chain.sh <command>

commands:
  up [N] [--chains K] [--durable]
             build (cargo, release), start ZooKeeper and N servers (default 3), one
             after another, each waited for until it is part of the chain; with
             --chains K, K chains of N servers (/chain1 ... /chainK) and a shard map
             giving them equal slot ranges (table-client shards init); with
             --durable each server keeps its table in <state>/data-<i> (--data-dir)
  status     every server this script started (index, PID, address, chain, alive or
             dead), then each chain as 'table-client members' shows it: node, address,
             state, role, last applied, committed, lag, uptime; with several chains,
             the shard map as 'table-client shards' shows it
  kill <i>   kill -9 server <i> (as numbered by status)
  add [<chain>]
             start one more server; it joins at the end of the chain (with several
             chains: of <chain>, default the first)
  restart    start again every server that is not running, on its own port and
             (--durable) data directory: after a whole chain was killed, the chain
             comes back with every acknowledged write
  down       stop everything this script started (servers with SIGTERM, then
             ZooKeeper) and remove the state directory
  --help     this text

Connect with:  CHAINTABLE_SECRET_FILE=<state>/client.secret \
                 target/release/table-client 127.0.0.1:<zookeeper port>

Security: 'up' makes a peer secret and a client secret (mode 0600) in the state
directory and starts every server with them: servers prove the peer secret to each
other (and write ZooKeeper with an identity derived from it), clients must prove the
client secret (table-client --secret-file, or CHAINTABLE_SECRET_FILE).

environment:
  CHAIN_DIR            state directory: PIDs, ports, logs (default /tmp/chaintable-chain)
  CHAIN_ZK_PORT        ZooKeeper port (default 2181 if free, else a free one)
  CHAIN_ZK_TICK_MS     ZooKeeper tickTime; sessions may be 2 to 20 ticks (default 500)
  CHAIN_ZK_TIMEOUT_MS  the servers' ZooKeeper session timeout: how long a dead server
                       stays in the chain (default 2000)
  CHAIN_TABLE_SIZE     lock stripes of each server's table (default 1024)
  CHAIN_SERVER_ARGS    more table-server options for every server, split at spaces
                       (e.g. "--max-memory 64mb --max-clients 200")
  CHAIN_METRICS_BASE_PORT
                       server <i> serves its metrics on 127.0.0.1:<base + i>
                       (--metrics-addr; default: no metrics)

ZooKeeper comes from the Debian package 'zookeeper' (with java); when it is
missing, 'up' installs it with apt-get as root, or says what to install.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${CHAIN_DIR:-/tmp/chaintable-chain}
zk_tick_ms=${CHAIN_ZK_TICK_MS:-500}
zk_timeout_ms=${CHAIN_ZK_TIMEOUT_MS:-2000}
table_size=${CHAIN_TABLE_SIZE:-1024}
read -r -a server_args <<<"${CHAIN_SERVER_ARGS:-}"
metrics_base=${CHAIN_METRICS_BASE_PORT:-}
if [[ -n $metrics_base ]] && ! [[ $metrics_base =~ ^[1-9][0-9]*$ && $metrics_base -lt 65535 ]]; then
  echo "chain.sh: CHAIN_METRICS_BASE_PORT must be a port number, not '$metrics_base'" >&2
  exit 2
fi
target_dir=${CARGO_TARGET_DIR:-$repo/target}
server_bin=$target_dir/release/table-server
client_bin=$target_dir/release/table-client

readonly ZK_CLASSPATH=/etc/zookeeper/conf:/usr/share/java/zookeeper.jar
readonly ZK_WAIT_TENTHS=300     # 30 s for ZooKeeper to answer
readonly SERVER_WAIT_TENTHS=600 # 60 s for a server to join (a state transfer can take a while)
readonly STOP_WAIT_TENTHS=100   # 10 s for a process to exit after SIGTERM
# A chain whose servers are all gone restarts after this many session
# timeouts without one of them (RESTART_FALLBACK_TIMEOUTS in src/limits.rs).
readonly RESTART_FALLBACK_TIMEOUTS=60

die() {
  echo "chain.sh: $*" >&2
  exit 1
}

# ---- processes, always by recorded PID ----

# running <pid>: the process exists and has not exited (a zombie has).
running() {
  local stat
  [[ -n $1 ]] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # The state follows the command name, which is in parentheses.
  [[ ${stat##*) } != Z* ]]
}

# is_ours <pid> <pattern>: the process runs and its command line matches, so a
# recycled PID of some other program is never signalled.
is_ours() {
  local pid=$1 pattern=$2 cmdline
  running "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$pattern"* ]]
}

# stop <pid> <pattern>: SIGTERM, then SIGKILL if it has not exited in time.
stop() {
  local pid=$1 pattern=$2 tenths=0
  is_ours "$pid" "$pattern" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while is_ours "$pid" "$pattern" && ((tenths < STOP_WAIT_TENTHS)); do
    sleep 0.1
    tenths=$((tenths + 1))
  done
  if is_ours "$pid" "$pattern"; then
    echo "chain.sh: PID $pid ignored SIGTERM for $((STOP_WAIT_TENTHS / 10)) s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# ---- ports ----

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  local port attempt
  for attempt in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" || { echo "$port"; return 0; }
  done
  die "no free loopback port found after $attempt tries"
}

# zk_answers <port>: ZooKeeper answers 'ruok' with 'imok'.
zk_answers() {
  local answer=""
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf ruok >&3
  read -r -t 2 -n 4 answer <&3 || true
  exec 3<&- 3>&-
  [[ $answer == imok ]]
}

# ---- state ----

# The chains' paths, one a line: /chain1 ... /chainK with --chains K, else
# the one default chain (given to servers and clients as no --chain at all).
chain_paths() {
  if [[ -f $state/chains ]]; then
    seq 1 "$(cat "$state/chains")" | sed 's|^|/chain|'
  else
    echo /chain
  fi
}

# chain_args <path>: the --chain option for <path>, none for the default chain.
chain_args() {
  [[ $1 == /chain ]] || printf '%s\n' --chain "$1"
}

# chain_of <index>: the chain server <index> was started in.
chain_of() {
  cat "$state/server-$1.chain" 2>/dev/null || echo /chain
}

# earlier_members <index> <path>: servers numbered below <index> started in <path>.
earlier_members() {
  local other count=0
  for other in $(seq 1 $(($1 - 1))); do
    [[ $(chain_of "$other") == "$2" ]] && count=$((count + 1))
  done
  echo "$count"
}

server_count() {
  local count=0
  while [[ -f $state/server-$((count + 1)).pid ]]; do
    count=$((count + 1))
  done
  echo "$count"
}

zk_port() {
  cat "$state/zookeeper.port"
}

# ---- steps ----

ensure_zookeeper() {
  [[ -f /usr/share/java/zookeeper.jar ]] && command -v java >/dev/null && return 0
  if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
    die "ZooKeeper is not installed; as root: apt-get update && apt-get install -y zookeeper"
  fi
  echo "chain.sh: installing ZooKeeper (apt-get install zookeeper)"
  DEBIAN_FRONTEND=noninteractive apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y zookeeper
  if [[ ! -f /usr/share/java/zookeeper.jar ]] || ! command -v java >/dev/null; then
    die "ZooKeeper or java is still missing after apt-get install zookeeper"
  fi
}

build() {
  if ! command -v cargo >/dev/null && [[ -x ${HOME:-}/.cargo/bin/cargo ]]; then
    PATH=$HOME/.cargo/bin:$PATH
  fi
  command -v cargo >/dev/null || die "cargo is not installed (see https://rustup.rs)"
  if [[ -x $server_bin ]]; then
    echo "chain.sh: building (cargo build --release --bins)"
  else
    echo "chain.sh: first build (cargo build --release --bins): compiling about 100 crates takes a few minutes"
  fi
  (cd "$repo" && cargo build --release --bins)
}

start_zookeeper() {
  local port=${CHAIN_ZK_PORT:-}
  if [[ -z $port ]]; then
    port=2181
    port_in_use "$port" && port=$(free_port)
  elif port_in_use "$port"; then
    die "CHAIN_ZK_PORT=$port is in use"
  fi
  mkdir -p "$state/zookeeper-data"
  # Loopback only: nobody else on the network reaches this ZooKeeper.
  printf '%s\n' "tickTime=$zk_tick_ms" "dataDir=$state/zookeeper-data" "clientPort=$port" \
    clientPortAddress=127.0.0.1 admin.enableServer=false 4lw.commands.whitelist=ruok >"$state/zoo.cfg"
  nohup java -cp "$ZK_CLASSPATH" -Xmx256m org.apache.zookeeper.server.ZooKeeperServerMain "$state/zoo.cfg" \
    >"$state/zookeeper.log" 2>&1 </dev/null &
  echo $! >"$state/zookeeper.pid"
  echo "$port" >"$state/zookeeper.port"
  local tenths=0
  until zk_answers "$port" 2>/dev/null; do
    running "$(cat "$state/zookeeper.pid")" ||
      die "ZooKeeper exited; the end of its log:"$'\n'"$(tail -n 20 "$state/zookeeper.log")"
    ((tenths++ < ZK_WAIT_TENTHS)) || die "ZooKeeper did not answer on port $port in $((ZK_WAIT_TENTHS / 10)) s"
    sleep 0.1
  done
  echo "chain.sh: ZooKeeper on 127.0.0.1:$port (PID $(cat "$state/zookeeper.pid"), tickTime $zk_tick_ms ms)"
}

# Makes the chain's peer and client secrets (32 random bytes, base64), readable
# by their owner only.
make_secrets() {
  local name
  for name in peer client; do
    [[ -s $state/$name.secret ]] && continue
    (umask 077 && head -c 32 /dev/urandom | base64 >"$state/$name.secret")
  done
}

# log_message <log> <pattern>: the first matching line of a server log,
# without its timestamp, level and module (shown to the user, never used to
# decide anything: what a server is, it is asked).
log_message() {
  local line
  line=$(grep -m 1 -e "$2" "$1" 2>/dev/null) || return 1
  echo "${line#*] }"
}

# client <args...>: table-client with the chain's client secret.
client() {
  "$client_bin" --secret-file "$state/client.secret" "$@"
}

# stat_of <address> <name>: one figure of the server's own 'stats' (empty if
# it does not answer).
# A server that does not listen yet is not an error here: with pipefail, the
# client's failure would end the whole script under set -e without a word.
stat_of() {
  { client --timeout-ms 1000 --server "$1" stats 2>/dev/null || true; } | sed -n "s/^$2: //p"
}

# ready_members <path>: how many members of chain <path> ZooKeeper lists as
# ready and answer their stats (0 when none, or when ZooKeeper does not answer).
ready_members() {
  local args
  mapfile -t args < <(chain_args "$1")
  client --json --timeout-ms 2000 "${args[@]}" "127.0.0.1:$(zk_port)" members 2>/dev/null |
    grep '"state":"ready"' | grep -c '"reachable":true' || true
}

# Starts server number <count + 1> on a free port, and waits until it says
# (in its stats) that it is a ready member of the chain; says what it did to
# the chain's generation (a new chain, a restart, or a restart that LOST writes).
start_server() {
  local index=${1:-$(($(server_count) + 1))}
  local chain=${2:-$(chain_of "$index")}
  local log=$state/server-$index.log pid port role="" tenths=0 wait_tenths=$SERVER_WAIT_TENTHS
  local previous_generation extra=()
  echo "$chain" >"$state/server-$index.chain"
  mapfile -t extra < <(chain_args "$chain")
  previous_generation=$(cat "$state/generation-${chain#/}" 2>/dev/null || true)
  if [[ -f $state/durable ]]; then
    extra+=(--data-dir "$state/data-$index")
  fi
  if [[ -f $state/durable ]] && (($(ready_members "$chain") == 0)) && [[ -d $state/data-$index ]]; then
    echo "chain.sh: server $index: no ready member; it restarts the chain from its data directory (or waits for a server that holds more) once the old sessions have expired"
    wait_tenths=$((RESTART_FALLBACK_TIMEOUTS * zk_timeout_ms / 100 + SERVER_WAIT_TENTHS))
  elif (($(earlier_members "$index" "$chain") > 0)) && (($(ready_members "$chain") == 0)); then
    # Every server of the chain is gone: the new one waits for one named in
    # the commit record, then restarts the chain, losing writes.
    echo "chain.sh: server $index: no ready member; it waits up to $((RESTART_FALLBACK_TIMEOUTS * zk_timeout_ms / 1000)) s for one to come back, then restarts the chain" >&2
    wait_tenths=$((RESTART_FALLBACK_TIMEOUTS * zk_timeout_ms / 100 + SERVER_WAIT_TENTHS))
  fi
  if [[ -n $metrics_base ]]; then
    extra+=(--metrics-addr "127.0.0.1:$((metrics_base + index))")
  fi
  # A first start binds port 0 and says which port it got in its address
  # file (a port picked here could be taken before the server binds it); a
  # restart takes its own port again.
  local address_file=$state/server-$index.address address=""
  port=0
  [[ -f $address_file ]] && port=$(cut -d: -f2 "$address_file")
  RUST_LOG=${RUST_LOG:-info,zookeeper=error} nohup "$server_bin" "$port" "$table_size" "127.0.0.1:$(zk_port)" \
    --zk-timeout-ms "$zk_timeout_ms" --peer-secret-file "$state/peer.secret" \
    --client-secret-file "$state/client.secret" --address-file "$address_file" \
    "${extra[@]}" "${server_args[@]}" >"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$state/server-$index.pid"
  until [[ -n $address ]]; do
    running "$pid" || die "server $index exited; the end of its log:"$'\n'"$(tail -n 20 "$log")"
    ((tenths++ < wait_tenths)) ||
      die "server $index did not listen in $((wait_tenths / 10)) s; the end of its log:"$'\n'"$(tail -n 20 "$log")"
    sleep 0.1
    address=$(cat "$address_file" 2>/dev/null || true)
  done
  # Ready: the server itself says it holds a role in the chain (after starting
  # the chain, or after a joiner's state transfer).
  until [[ $role =~ ^(head|middle|tail|head\+tail)$ ]]; do
    running "$pid" || die "server $index exited; the end of its log:"$'\n'"$(tail -n 20 "$log")"
    ((tenths++ < wait_tenths)) ||
      die "server $index did not join in $((wait_tenths / 10)) s; the end of its log:"$'\n'"$(tail -n 20 "$log")"
    sleep 0.1
    role=$(stat_of "$address" role)
  done
  local generation
  generation=$(stat_of "$address" generation)
  echo "$generation" >"$state/generation-${chain#/}"
  echo "chain.sh: server $index on $address (PID $pid) is in the chain $chain"
  if [[ -n $metrics_base ]]; then
    echo "chain.sh: server $index: metrics on http://127.0.0.1:$((metrics_base + index))/metrics"
  fi
  if [[ -z $previous_generation ]]; then
    echo "chain.sh: server $index: the chain is at generation $generation"
  elif ((generation > previous_generation)); then
    echo "chain.sh: server $index restarted the chain as generation $generation and WRITES WERE LOST:" \
      "$(log_message "$log" "ERROR.*LOST" || echo "see $log")" >&2
  fi
}

# ---- commands ----

cmd_up() {
  local count=3 chains=1 durable="" arg
  while (($# > 0)); do
    arg=$1
    shift
    case $arg in
      --durable) durable=1 ;;
      --chains)
        chains=${1:-}
        [[ $chains =~ ^[1-9][0-9]*$ ]] || die "up: --chains needs a positive number, not '$chains'"
        shift
        ;;
      *) [[ $arg =~ ^[1-9][0-9]*$ ]] || die "up: N must be a positive number, not '$arg'"; count=$arg ;;
    esac
  done
  if [[ -f $state/zookeeper.pid ]]; then
    die "a chain is already up (state in $state); 'scripts/chain.sh down' first"
  fi
  ensure_zookeeper
  build
  mkdir -p "$state"
  [[ -z $durable ]] || touch "$state/durable"
  ((chains == 1)) || echo "$chains" >"$state/chains"
  make_secrets
  # If anything fails from here on, stop what was started.
  trap 'echo "chain.sh: up failed; stopping what it started" >&2; cmd_down >&2' EXIT
  start_zookeeper
  local chain paths
  mapfile -t paths < <(chain_paths)
  for chain in "${paths[@]}"; do
    for _ in $(seq 1 "$count"); do
      start_server "" "$chain"
    done
  done
  if ((chains > 1)); then
    client "127.0.0.1:$(zk_port)" shards init "${paths[@]}"
  fi
  trap - EXIT
  echo
  if ((chains > 1)); then
    echo "$chains chains of $count up (${paths[*]}), keys routed by the shard map /shards."
    echo "Clients must prove the client secret; connect with:"
  else
    echo "chain of $count up. Clients must prove the client secret; connect with:"
  fi
  echo "  export CHAINTABLE_SECRET_FILE=$state/client.secret"
  echo "  $client_bin 127.0.0.1:$(zk_port)"
  echo "(or: $client_bin --secret-file $state/client.secret 127.0.0.1:$(zk_port))"
  echo "See it:  scripts/chain.sh status      Stop it:  scripts/chain.sh down"
}

require_up() {
  [[ -f $state/zookeeper.pid ]] || die "no chain is up (no state in $state); 'scripts/chain.sh up' first"
}

cmd_status() {
  require_up
  local zk_pid zk_alive
  zk_pid=$(cat "$state/zookeeper.pid")
  zk_alive=dead
  is_ours "$zk_pid" ZooKeeperServerMain && zk_alive=alive
  printf 'zookeeper  PID %-8s 127.0.0.1:%-6s %s\n' "$zk_pid" "$(zk_port)" "$zk_alive"
  printf '%-6s %-8s %-22s %-10s %s\n' index PID address chain process
  local index pid address alive chain args
  for index in $(seq 1 "$(server_count)"); do
    pid=$(cat "$state/server-$index.pid")
    address=$(cat "$state/server-$index.address" 2>/dev/null || echo "?")
    alive=dead
    is_ours "$pid" table-server && alive=alive
    printf '%-6s %-8s %-22s %-10s %s\n' "$index" "$pid" "$address" "$(chain_of "$index")" "$alive"
  done
  [[ $zk_alive == alive ]] || { echo "  (ZooKeeper is not running)"; return 0; }
  for chain in $(chain_paths); do
    echo
    echo "the chain $chain, as ZooKeeper lists it and each member reports itself (table-client members):"
    mapfile -t args < <(chain_args "$chain")
    client --timeout-ms 2000 "${args[@]}" "127.0.0.1:$(zk_port)" members ||
      echo "  (table-client members failed; see above)"
  done
  if [[ -f $state/chains ]]; then
    echo
    echo "the shard map (table-client shards):"
    client --timeout-ms 2000 "127.0.0.1:$(zk_port)" shards || echo "  (table-client shards failed; see above)"
  fi
}

cmd_kill() {
  require_up
  local index=${1:-}
  [[ $index =~ ^[1-9][0-9]*$ && -f $state/server-$index.pid ]] ||
    die "kill: give a server index between 1 and $(server_count) (see 'scripts/chain.sh status')"
  local pid
  pid=$(cat "$state/server-$index.pid")
  is_ours "$pid" table-server || die "server $index (PID $pid) is not running"
  kill -KILL "$pid"
  echo "chain.sh: killed server $index (PID $pid, $(cat "$state/server-$index.address")) with SIGKILL"
}

cmd_add() {
  require_up
  is_ours "$(cat "$state/zookeeper.pid")" ZooKeeperServerMain || die "ZooKeeper is not running"
  local chain=${1:-$(chain_paths | head -n 1)}
  chain_paths | grep -qx -- "$chain" || die "add: no chain $chain here (chains: $(chain_paths | tr '\n' ' '))"
  start_server "" "$chain"
}

cmd_restart() {
  require_up
  is_ours "$(cat "$state/zookeeper.pid")" ZooKeeperServerMain || die "ZooKeeper is not running"
  local index restarted=0
  for index in $(seq 1 "$(server_count)"); do
    is_ours "$(cat "$state/server-$index.pid")" table-server && continue
    start_server "$index"
    restarted=$((restarted + 1))
  done
  ((restarted > 0)) || echo "chain.sh: every server is running; nothing to restart"
}

cmd_down() {
  if [[ ! -d $state ]]; then
    echo "chain.sh: nothing to stop (no $state)"
    return 0
  fi
  local index
  for index in $(seq 1 "$(server_count)"); do
    stop "$(cat "$state/server-$index.pid")" table-server
  done
  if [[ -f $state/zookeeper.pid ]]; then
    stop "$(cat "$state/zookeeper.pid")" ZooKeeperServerMain
  fi
  rm -rf "$state"
  echo "chain.sh: stopped; removed $state"
}

case ${1:-} in
  up) shift; (($# <= 4)) || die "up takes at most N, --chains K and --durable"; cmd_up "$@" ;;
  restart) cmd_restart ;;
  status) cmd_status ;;
  kill) shift; cmd_kill "$@" ;;
  add) shift; cmd_add "$@" ;;
  down) cmd_down ;;
  --help | help) usage ;;
  "") usage >&2; exit 2 ;;
  *) echo "chain.sh: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
