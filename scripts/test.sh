#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run): installs the
# system packages the tests need when they are missing, then runs formatting,
# lint, release build, every cargo test, and the valgrind check of the server.
# Every step runs even when an earlier one failed; the exit status is non-zero
# if any failed.
#
# usage: scripts/test.sh
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/test.sh

Runs every check of the project, in this order:
  cargo fmt --check
  cargo clippy --all-targets -- -D warnings
  cargo build --release --bins
  cargo test --all-targets, then cargo test --doc
  table-check sim: 2000 simulated runs and 500 with disks (--durable) from a fresh base seed (printed; set
    TABLE_CHECK_SIM_SEED to replay), then each injected protocol bug, which must FAIL
  table-check for 60 s under kill, pause, join and (as root) partition faults (fresh seed, printed;
    set TABLE_CHECK_SEED to replay one)
  scripts/valgrind.sh

Missing system packages (a C linker, valgrind, zookeeper, java and prometheus
for promtool) are installed with apt-get when running as root; otherwise it
says what to install.
EOF
}

while (($# > 0)); do
  case $1 in
    --help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

section() {
  printf '\n==== %s ====\n' "$*"
}

section "toolchain"
# rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH.
if ! command -v cargo >/dev/null && [[ -x ${HOME:-}/.cargo/bin/cargo ]]; then
  PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null; then
  cat >&2 <<'EOF'
test.sh: cargo is not installed. Install Rust with rustup (https://rustup.rs):

    curl --proto '=https' --tlsv1.2 --silent --show-error --fail https://sh.rustup.rs \
      | sh -s -- -y --profile minimal --component rustfmt,clippy
    . "$HOME/.cargo/env"

then run scripts/test.sh again.
EOF
  exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy
  else
    echo "test.sh: cargo fmt and cargo clippy are needed: install the rustfmt and clippy components" >&2
    exit 1
  fi
fi
cargo --version
cargo fmt --version
cargo clippy --version

section "system packages"
missing=()
command -v cc >/dev/null || missing+=(gcc libc6-dev)           # linker for cargo
command -v valgrind >/dev/null || missing+=(valgrind)          # scripts/valgrind.sh
[[ -f /usr/share/java/zookeeper.jar ]] || missing+=(zookeeper) # chain-mode tests
command -v java >/dev/null || missing+=(default-jre-headless)  # runs ZooKeeper
command -v promtool >/dev/null || missing+=(prometheus)        # tests/metrics.rs: promtool check metrics
if ((${#missing[@]} > 0)); then
  if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
    echo "test.sh: missing system packages: ${missing[*]}" >&2
    echo "test.sh: install them (as root: apt-get update && apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install --yes --no-install-recommends "${missing[@]}"
fi
for tool in cc valgrind java promtool; do
  command -v "$tool" >/dev/null || { echo "test.sh: $tool is still missing after installing" >&2; exit 1; }
done
[[ -f /usr/share/java/zookeeper.jar ]] || { echo "test.sh: /usr/share/java/zookeeper.jar is still missing" >&2; exit 1; }
echo "cc, valgrind, java, promtool and /usr/share/java/zookeeper.jar are present"

test_log=$(mktemp --tmpdir chaintable-test.XXXXXX)
trap 'rm -f "$test_log" "$test_log.sim"' EXIT

failed_steps=()

# step <name> <command...>: runs one step under a header, records a failure.
step() {
  local name=$1
  shift
  section "$name"
  local started=$SECONDS status=0
  "$@" || status=$?
  if ((status == 0)); then
    echo "-- $name: ok ($((SECONDS - started)) s)"
  else
    echo "-- $name: FAILED with exit status $status ($((SECONDS - started)) s)"
    failed_steps+=("$name")
  fi
}

# Every cargo test target, with the output also kept to count the results.
cargo_test() {
  local status=0
  cargo test --all-targets --no-fail-fast 2>&1 | tee "$test_log" || status=$?
  cargo test --doc 2>&1 | tee --append "$test_log" || status=$?
  return "$status"
}

# About a minute of randomized clients under kill, pause and join faults, plus
# network partitions where this machine can make network namespaces (root and
# iproute2), the history checked for linearizability; a fresh seed each run,
# printed so a failure can be replayed.
table_check_nemesis() {
  if [[ $(id -u) == 0 ]] && ip netns list >/dev/null 2>&1; then
    echo kill,pause,join,partition
  else
    echo kill,pause,join
  fi
}

# The chain protocol in simulation: 2000 seeded runs that must pass (and 500
# with disks: crashes restart servers on their disks), then
# each injected bug (every safety check of src/chain/ switched off in turn;
# the list comes from the binary), which up to 30000 runs from the same base must
# catch: each run draws its own mix of faults (swarm testing), with faults
# aimed at hand-overs, replaced links, view changes and restarts. The catch
# run of each bug from 10 bases: scripts/sim-catch.sh.
table_check_sim() {
  local seed=${TABLE_CHECK_SIM_SEED:-$(od --address-radix=n --read-bytes=4 --format=u4 /dev/urandom | tr -d ' ')}
  echo "table-check sim base seed $seed; replay with:"
  echo "  target/release/table-check sim --seeds 2000 --seed $seed"
  target/release/table-check sim --seeds 2000 --seed "$seed" || return 1
  echo "  target/release/table-check sim --seeds 500 --seed $seed --durable"
  target/release/table-check sim --seeds 500 --seed "$seed" --durable || return 1
  echo "  target/release/table-check sim --seeds 500 --seed $seed --chains 2"
  target/release/table-check sim --seeds 500 --seed "$seed" --chains 2 || return 1
  local bug status bugs kind
  bugs=$(target/release/table-check sim --list-bugs) || return 1
  while read -r bug kind; do
    if [[ $kind == shadowed ]]; then
      echo "injected bug $bug: shadowed by another check, not caught yet (see table-check --help)"
      continue
    fi
    status=0
    local durable=()
    [[ $kind == durable ]] && durable=(--durable)
    [[ $kind == chains ]] && durable=(--chains 2)
    target/release/table-check sim --seeds 30000 --seed "$seed" --inject-bug "$bug" "${durable[@]}" >"$test_log.sim" ||
      status=$?
    if ((status == 1)); then
      echo "injected bug $bug: caught ($(grep --only-matching 'run [0-9]* of' "$test_log.sim"))"
    else
      echo "injected bug $bug: NOT caught (exit $status):"
      tail -5 "$test_log.sim"
      return 1
    fi
  done <<<"$bugs"
}

table_check() {
  local seed=${TABLE_CHECK_SEED:-$(od --address-radix=n --read-bytes=4 --format=u4 /dev/urandom | tr -d ' ')}
  local nemesis
  nemesis=$(table_check_nemesis)
  [[ $nemesis == *partition* ]] ||
    echo "no network namespaces here (needs root and iproute2): no partition faults"
  echo "table-check seed $seed; replay with:"
  echo "  target/release/table-check --duration 60 --nemesis $nemesis --seed $seed"
  target/release/table-check --duration 60 --nemesis "$nemesis" --seed "$seed"
}

step "cargo fmt --check" cargo fmt --check
step "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
step "cargo build --release --bins" cargo build --release --bins
step "cargo test" cargo_test
step "table-check sim (2000 seeds, and each injected bug)" table_check_sim
step "table-check (60 s: kill, pause, join, partition)" table_check
step "scripts/valgrind.sh" bash scripts/valgrind.sh

section "summary"
if ((${#failed_steps[@]} > 0)); then
  echo "test.sh: FAILED steps:"
  printf '  %s\n' "${failed_steps[@]}"
  exit 1
fi
echo "test.sh: every step passed"
# Totals of cargo test's own "test result:" lines; printed only when every
# step passed, so the line never hides a test binary that crashed.
awk '
  /^test result: / {
    for (i = 1; i < NF; i++) {
      if ($(i + 1) ~ /^passed;?$/) passed += $i
      if ($(i + 1) ~ /^failed;?$/) failed += $i
      if ($(i + 1) ~ /^ignored;?$/) ignored += $i
    }
  }
  END {
    line = sprintf("%d passed, %d failed", passed, failed)
    if (ignored > 0) line = line sprintf(", %d skipped", ignored)
    print line
  }
' "$test_log"
