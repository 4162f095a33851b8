# The workload that scripts/valgrind.sh and scripts/heaptrack.sh run a
# table-server through, under their tool (sourced, not run):
#
# 1. standalone, while the real table-client drives a workload against it
#    (sequential and concurrent puts, gets and deletes, the whole-table
#    commands, a 1 MiB value, an oversized key) and raw garbage is sent to
#    exercise the error paths;
# 2. in a chain (ZooKeeper and the other servers from scripts/chain.sh): it
#    joins a chain of one as its tail (receiving a state transfer), becomes
#    head and tail when the first server is killed, streams a state transfer
#    to a server that joins behind it, and then serves writes as a head,
#    whose replies are sent by whichever thread sees them commit.
#
# Each run ends with SIGTERM and a clean shutdown, then the tool's report.
# The sourcing script sets me (its name), tool, tool_verdict (what a pass
# means, for the last line) and defines tool_usage, tool_check (exits if the
# tool is missing, or installs it), tool_start <name> <table-server
# args...> (start "$server_bin" under the tool in the background, stdin
# from /dev/null, stderr to $work/<name>-server.log; set server_pid to the server's own pid and
# tool_pid to the pid to wait for) and tool_report <name> <exit status>
# (check and print the tool's findings; fail on what counts as a failure).

usage() {
  echo "usage: scripts/$me [--keep-log] [--skip-chain]"
  echo
  tool_usage
  cat <<EOF

options:
  --keep-log    keep the $tool output and server logs and print where they are
                (they are always kept when the run fails)
  --skip-chain  only the standalone run (the chain run needs ZooKeeper, which
                scripts/chain.sh installs or says how to)
  --help        this text
EOF
}

keep_log=false
skip_chain=false
while (($# > 0)); do
  case $1 in
    --keep-log) keep_log=true ;;
    --skip-chain) skip_chain=true ;;
    --help) usage; exit 0 ;;
    *) echo "$me: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
tool_check

# Limits of this script, so it always ends.
readonly PORT_WAIT_TENTHS=300        # 30 s for the server to listen (valgrind starts slowly)
readonly SHUTDOWN_WAIT_TENTHS=600    # 60 s for a clean shutdown after SIGTERM
readonly RAW_REPLY_TIMEOUT_S=30      # for reading a reply to hand-made frames
readonly WORKERS=4                   # concurrent one-shot clients
readonly WORKER_ITERATIONS=30        # put+get each, del+get every third: 80 calls per worker
readonly SHELL_BATCHES=2             # concurrent shell-mode clients
readonly SHELL_BATCH_KEYS=100        # put+get each, del every second: 250 lines per batch
readonly TABLE_STRIPES=64
readonly CHAIN_WAIT_TENTHS=900       # 90 s for the server under the tool to become ready or head
readonly CHAIN_ZK_TIMEOUT_MS=4000    # its session timeout (valgrind slows its pings down)
readonly CHAIN_EARLY_KEYS=20         # written before it joins, read back at the end
readonly CHAIN_BENCH_SECONDS=6       # write workload through it as head

echo "$me: building (release profile, which keeps line-level debug info)"
cargo build --release --bins
server_bin=$repo/target/release/table-server
client_bin=$repo/target/release/table-client
bench_bin=$repo/target/release/table-bench

work=$(mktemp --directory --tmpdir "chaintable-$tool.XXXXXX")
server_pid=""
tool_pid=""
background_pids=()
held_fds=()
chain_up=false
succeeded=false

cleanup() {
  local status=$?
  local pid fd
  for pid in "${background_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if [[ -n $tool_pid ]]; then
    kill -KILL "$tool_pid" 2>/dev/null || true
    wait "$tool_pid" 2>/dev/null || true
  fi
  for fd in "${held_fds[@]}"; do
    exec {fd}<&- || true
  done
  if $chain_up; then
    CHAIN_DIR=$work/chain "$repo/scripts/chain.sh" down >/dev/null 2>&1 || true
  fi
  if $succeeded && ! $keep_log; then
    rm -rf "$work"
  else
    echo "$me: logs kept in $work ($tool output, *-server.log, client.err, chain/)"
  fi
  exit "$status"
}
trap cleanup EXIT

fail() {
  echo "$me: FAIL: $*" >&2
  exit 1
}

# start_under_tool <name> <table-server arguments...>: starts the server
# under the tool (the caller's tool_start, which sets server_pid and
# tool_pid), its own log in $work/<name>-server.log; sets port once it
# listens.
start_under_tool() {
  local name=$1
  shift
  # The background job creates the log when it gets to run; until then sed
  # below would find no file.
  : >"$work/$name-server.log"
  local address_file=$work/$name.address
  tool_start "$name" "$@" --address-file "$address_file"
  port=""
  for ((tenth = 0; tenth < PORT_WAIT_TENTHS; tenth++)); do
    if [[ -s $address_file ]]; then
      port=$(sed --quiet 's/^127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$address_file")
      [[ -n $port ]] && return 0
      fail "the server listens on $(cat "$address_file"), not on 127.0.0.1"
    fi
    kill -0 "$tool_pid" 2>/dev/null || { cat "$work/$name-server.log" >&2; fail "the server exited before listening"; }
    sleep 0.1
  done
  cat "$work/$name-server.log" >&2
  fail "no address in $address_file after $((PORT_WAIT_TENTHS / 10)) s"
}

# stop_and_check <name>: SIGTERM to the server, a clean shutdown within the
# limit (the tool's wrapper, if any, ends too), then the tool's report
# (the caller's tool_report <name> <server exit status>).
stop_and_check() {
  local name=$1 tenth server_status=0
  kill -TERM "$server_pid"
  for ((tenth = 0; tenth < SHUTDOWN_WAIT_TENTHS; tenth++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$server_pid" 2>/dev/null && fail "the server did not shut down within $((SHUTDOWN_WAIT_TENTHS / 10)) s of SIGTERM"
  wait "$tool_pid" || server_status=$?
  server_pid=""
  tool_pid=""
  grep --quiet "shut down" "$work/$name-server.log" || fail "the server log has no 'shut down' line"

  tool_report "$name" "$server_status"
}

echo "$me: starting table-server under $tool"
start_under_tool standalone 0 "$TABLE_STRIPES"
address=127.0.0.1:$port
echo "$me: server (pid $server_pid) listening on $address"

client() {
  "$client_bin" --server "$address" "$@"
}

# check <what> <expected stdout> <expected exit status> <client command words...>
check() {
  local what=$1 expected_out=$2 expected_status=$3
  shift 3
  local out status=0
  out=$(client "$@" 2>>"$work/client.err") || status=$?
  [[ $status == "$expected_status" ]] || fail "$what: exit status $status, expected $expected_status"
  [[ $out == "$expected_out" ]] || fail "$what: printed '${out:0:200}', expected '${expected_out:0:200}'"
}

echo "$me: one-shot commands"
check "put" OK 0 put alpha one
check "get" one 0 get alpha
check "overwrite" OK 0 put alpha "two words"
check "get overwritten" "two words" 0 get alpha
check "put joins value words" OK 0 p beta two words
check "get joined" "two words" 0 g beta
check "get absent" "" 1 get missing
check "del absent" "" 1 del missing
check "del" OK 0 d beta
check "get deleted" "" 1 get beta
check "unicode key and value" OK 0 put "clé" "välue ✓"
check "get unicode" "välue ✓" 0 get "clé"
check "size" 2 0 size
check "size short form" 2 0 s
check "usage error" "" 2 get
check "oversized key refused by the server" "" 2 put "$(head --bytes=17000 /dev/zero | tr '\0' k)" v
grep --quiet "over the maximum" "$work/client.err" || fail "the oversized key was not refused as too large"
keys_expected=2

worker() {
  local worker=$1 i key
  for ((i = 0; i < WORKER_ITERATIONS; i++)); do
    key=w$worker-k$i
    check "worker put" OK 0 put "$key" "value $worker $i"
    check "worker get" "value $worker $i" 0 get "$key"
    if ((i % 3 == 0)); then
      check "worker del" OK 0 del "$key"
      check "worker get deleted" "" 1 get "$key"
    fi
  done
}

# One shell-mode client: the value of put is the rest of the line (spaces kept).
shell_batch() {
  local batch=$1 put=$2 get=$3 del=$4 i
  {
    for ((i = 0; i < SHELL_BATCH_KEYS; i++)); do printf '%s s%d-k%d value  with spaces %d\n' "$put" "$batch" "$i" "$i"; done
    for ((i = 0; i < SHELL_BATCH_KEYS; i++)); do printf '%s s%d-k%d\n' "$get" "$batch" "$i"; done
    for ((i = 0; i < SHELL_BATCH_KEYS; i += 2)); do printf '%s s%d-k%d\n' "$del" "$batch" "$i"; done
  } | client >"$work/shell-$batch.out" 2>>"$work/client.err" || fail "shell batch $batch exited non-zero"
  {
    for ((i = 0; i < SHELL_BATCH_KEYS; i++)); do echo OK; done
    for ((i = 0; i < SHELL_BATCH_KEYS; i++)); do echo "value  with spaces $i"; done
    for ((i = 0; i < SHELL_BATCH_KEYS; i += 2)); do echo OK; done
  } >"$work/shell-$batch.expected"
  cmp --quiet "$work/shell-$batch.out" "$work/shell-$batch.expected" || fail "shell batch $batch printed unexpected output"
}

echo "$me: $WORKERS one-shot workers and $SHELL_BATCHES shell-mode clients concurrently"
for ((worker_number = 0; worker_number < WORKERS; worker_number++)); do
  worker "$worker_number" &
  background_pids+=($!)
done
shell_batch 0 put get del &
background_pids+=($!)
shell_batch 1 p g d &
background_pids+=($!)
background_failures=0
for pid in "${background_pids[@]}"; do
  wait "$pid" || background_failures=$((background_failures + 1))
done
background_pids=()
((background_failures == 0)) || fail "$background_failures concurrent clients failed"
keys_expected=$((keys_expected + WORKERS * (WORKER_ITERATIONS - (WORKER_ITERATIONS + 2) / 3)))
keys_expected=$((keys_expected + SHELL_BATCHES * (SHELL_BATCH_KEYS / 2)))
check "size after concurrent clients" "$keys_expected" 0 size

echo "$me: a 1 MiB value (through shell mode: one argument is limited to 128 KiB by the kernel)"
big_value=$(head --bytes=786432 /dev/urandom | base64 --wrap=0)
((${#big_value} == 1048576)) || fail "the big value is ${#big_value} bytes, expected 1 MiB"
shell_out=$(printf 'put big %s\n' "$big_value" | client 2>>"$work/client.err") || fail "putting the 1 MiB value failed"
[[ $shell_out == OK ]] || fail "putting the 1 MiB value printed '$shell_out'"
[[ $(client get big) == "$big_value" ]] || fail "the 1 MiB value did not come back intact"
keys_expected=$((keys_expected + 1))

echo "$me: getkeys, gettable, stats"
client getkeys >"$work/getkeys.out"
(($(wc --lines <"$work/getkeys.out") == keys_expected)) || fail "getkeys printed $(wc --lines <"$work/getkeys.out") keys, expected $keys_expected"
LC_ALL=C sort --check "$work/getkeys.out" || fail "getkeys is not sorted"
client gettable >"$work/gettable.out"
(($(wc --lines <"$work/gettable.out") == keys_expected)) || fail "gettable printed the wrong number of lines"
grep --quiet --fixed-strings --line-regexp "alpha	two words" "$work/gettable.out" || fail "gettable lacks alpha"
[[ $(grep "^big	" "$work/gettable.out") == "big	$big_value" ]] || fail "gettable lacks the 1 MiB value"
client stats >"$work/stats.out"
grep --quiet --line-regexp "keys: $keys_expected" "$work/stats.out" || fail "stats does not report $keys_expected keys"

echo "$me: malformed input over raw TCP"
# One connection: bad frames each get an error reply and the connection goes
# on (a valid GET is answered after them); the oversized length at the end is
# refused with an error reply and the server closes the connection.
exec {raw}<>"/dev/tcp/127.0.0.1/$port"
held_fds+=("$raw")
{
  printf '\x00\x00\x00\x03\xff\xff\xff'          # does not decode
  printf '\x00\x00\x00\x02\x08\x4d'              # opcode 77
  printf '\x00\x00\x00\x00'                      # empty frame: no opcode
  printf '\x00\x00\x00\x04\x22\x02\xff\xfe'      # key that is not UTF-8
  printf '\x00\x00\x00\x05\x08\x01\x2a\x01v'     # PUT with a value but no key
  printf '\x00\x00\x01\x00'                      # 256 random bytes as a frame
  head --bytes=256 /dev/urandom
  printf '\x00\x00\x00\x09\x08\x02\x22\x05alpha' # a valid GET alpha
  printf '\xff\xff\xff\xff'                      # 4 GiB frame: refused, connection closed
} >&"$raw"
timeout "$RAW_REPLY_TIMEOUT_S" cat <&"$raw" >"$work/raw-replies.bin" || fail "the server did not close the connection after an oversized frame"
exec {raw}<&-
held_fds=()
for expected in "does not decode" "unknown opcode 77" "OP_UNSPECIFIED is not a request opcode" \
  "a non-empty key is required" "two words" "over the maximum of 67108864 bytes; closing"; do
  grep --quiet --text --fixed-strings "$expected" "$work/raw-replies.bin" || fail "no '$expected' in the replies to raw frames"
done
# Connections that end inside a frame or send random bytes, closed by us.
for frame in '\x00\x00' '\x00\x00\x00\x10abc'; do
  exec {raw}<>"/dev/tcp/127.0.0.1/$port"
  printf '%b' "$frame" >&"$raw"
  exec {raw}<&-
done
exec {raw}<>"/dev/tcp/127.0.0.1/$port"
# The server may refuse the first 4 bytes as a length and close while we
# still write; a broken pipe here is expected.
head --bytes=4096 /dev/urandom >&"$raw" || true
exec {raw}<&-
check "still serving after malformed input" "$keys_expected" 0 size
client stats >"$work/stats.out"
errors=$(sed --quiet 's/^errors: //p' "$work/stats.out")
((errors >= 7)) || fail "stats counts $errors errors, expected at least 7"

# Two connections stay open across shutdown: one idle, one inside a frame.
exec {idle}<>"/dev/tcp/127.0.0.1/$port"
held_fds+=("$idle")
exec {partial}<>"/dev/tcp/127.0.0.1/$port"
held_fds+=("$partial")
printf '\x00\x00\x00\x64partial...' >&"$partial"
sleep 1

echo "$me: SIGTERM to the server (2 connections still open)"
stop_and_check standalone
for fd in "${held_fds[@]}"; do
  exec {fd}<&-
done
held_fds=()
echo "$me: standalone: $tool_verdict, clean shutdown"

if ! $skip_chain; then
  chain() {
    CHAIN_DIR=$work/chain "$repo/scripts/chain.sh" "$@"
  }
  # wait_for_role <what> <role regex>: until the server under the tool says
  # (its 'stats' role) it has that role; asked, never read in its log.
  wait_for_role() {
    local what=$1 pattern=$2 tenth role=""
    for ((tenth = 0; tenth < CHAIN_WAIT_TENTHS; tenth++)); do
      role=$("$client_bin" --timeout-ms 2000 --server "127.0.0.1:$port" stats 2>/dev/null | sed --quiet 's/^role: //p')
      [[ $role =~ ^($pattern)$ ]] && return 0
      kill -0 "$server_pid" 2>/dev/null || { cat "$work/chain-member-server.log" >&2; fail "the server exited before $what"; }
      sleep 0.1
    done
    cat "$work/chain-member-server.log" >&2
    fail "not $what after $((CHAIN_WAIT_TENTHS / 10)) s (its role: '$role')"
  }

  echo
  echo "$me: chain: ZooKeeper and a chain of 1 (scripts/chain.sh)"
  chain_up=true
  chain up 1 >"$work/chain-up.log" 2>&1 || { cat "$work/chain-up.log" >&2; fail "scripts/chain.sh up 1 failed"; }
  zookeeper=127.0.0.1:$(cat "$work/chain/zookeeper.port")
  # chain.sh's chain authenticates peers and clients: the server under the
  # tool joins with its secrets, and every client proves the client secret.
  export CHAINTABLE_SECRET_FILE=$work/chain/client.secret
  chain_secrets=(--peer-secret-file "$work/chain/peer.secret" --client-secret-file "$work/chain/client.secret")
  for ((i = 0; i < CHAIN_EARLY_KEYS; i++)); do
    "$client_bin" "$zookeeper" put "early-$i" "value $i" >/dev/null 2>>"$work/client.err" || fail "put early-$i through the chain"
  done

  echo "$me: chain: a server under $tool joins as the tail (state transfer in)"
  start_under_tool chain-member 0 "$TABLE_STRIPES" "$zookeeper" --zk-timeout-ms "$CHAIN_ZK_TIMEOUT_MS" \
    "${chain_secrets[@]}"
  wait_for_role "ready in the chain" "head|middle|tail|head\\+tail"
  echo "$me: chain: the first server is killed; the server under $tool becomes head and tail"
  chain kill 1 >/dev/null
  wait_for_role "head and tail" "head\\+tail"
  echo "$me: chain: a server joins behind it (state transfer out); it is now the head"
  chain add >"$work/chain-add.log" 2>&1 || { cat "$work/chain-add.log" >&2; fail "scripts/chain.sh add failed"; }
  wait_for_role "head" "head"

  echo "$me: chain: ${CHAIN_BENCH_SECONDS} s of writes and reads through it (table-bench, 8 clients)"
  "$bench_bin" --zk "$zookeeper" --clients 8 --duration "$CHAIN_BENCH_SECONDS" --warmup 0 --keys 1000 \
    --mix 30:60:10 --json >"$work/chain-bench.json" 2>>"$work/client.err" || fail "table-bench through the chain failed"
  bench_line=$(tail -n 1 "$work/chain-bench.json")
  [[ $bench_line =~ \"errors\":0, ]] || fail "table-bench through the chain had errors: $bench_line"
  puts=$(sed --quiet 's/.*"puts":\([0-9]*\).*/\1/p' <<<"$bench_line")
  ((${puts:-0} > 0)) || fail "no puts went through the chain: $bench_line"
  echo "$me: chain: $puts puts through the head under $tool"
  for ((i = 0; i < CHAIN_EARLY_KEYS; i++)); do
    value=$("$client_bin" "$zookeeper" get "early-$i" 2>>"$work/client.err") || fail "get early-$i through the chain"
    [[ $value == "value $i" ]] || fail "early-$i is '$value' after two state transfers, expected 'value $i'"
  done
  echo "$me: chain: SIGTERM to the head under $tool"
  stop_and_check chain-member
  chain down >/dev/null 2>&1 || true
  chain_up=false
  echo "$me: chain: $tool_verdict, clean shutdown"
fi
succeeded=true
echo "$me: OK: $tool_verdict, clean shutdowns"
