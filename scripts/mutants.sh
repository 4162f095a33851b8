#!/usr/bin/env bash
# Mutation testing of the protocol core: cargo-mutants changes src/chain/
# one operator or return value at a time and runs the chain unit tests
# (the scenario tests of src/chain/scenarios.rs among them) and the
# simulator's tests (the seeds that found bugs and every injected bug) on
# each mutant. A mutant that builds and passes them all is "missed": a
# change of the code no test notices.
#
# Each mutant is a rebuild of the library's test binary (`--lib`: the
# integration tests are not built), so a full run takes
# hours on a small machine; it works on a copy of the tree in $TMPDIR and
# writes its results as it goes (mutants.out/caught.txt, missed.txt,
# unviable.txt, timeout.txt, outcomes.json). The `mutants` cargo profile
# (Cargo.toml) is the release profile, incremental and without debug info,
# so a mutant rebuilds only what changed.
#
# usage: scripts/mutants.sh [--jobs N] [--timeout SECONDS] [--iterate] [--output DIR]
set -euo pipefail

usage() {
  cat <<'TEXT'
usage: scripts/mutants.sh [--jobs N] [--timeout SECONDS] [--iterate] [--output DIR]

Runs cargo-mutants over src/chain/*.rs with the test command
  cargo test --profile mutants --lib -- chain:: check::sim::
and prints where the results are.

  --jobs N           mutants built and tested at once (default 1)
  --timeout SECONDS  a test run longer than this counts as a timeout
                     (default 120; the unmutated tests take about 3 s)
  --iterate          test again only the mutants not caught last time
  --output DIR       write DIR/mutants.out (default: the repository)
  --help             this text

Needs cargo-mutants: cargo install --locked cargo-mutants
TEXT
}

jobs=1
timeout=120
iterate=()
output=
while (($#)); do
  case $1 in
    --jobs) jobs=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --iterate) iterate=(--iterate); shift ;;
    --output) output=$2; shift 2 ;;
    --help | -h) usage; exit 0 ;;
    *) echo "mutants.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "mutants.sh: cargo-mutants is not installed: cargo install --locked cargo-mutants" >&2
  exit 1
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
output=${output:-$repo}

cargo mutants \
  --file 'src/chain/*.rs' \
  --profile mutants \
  --jobs "$jobs" \
  --timeout "$timeout" \
  --build-timeout 1200 \
  --output "$output" \
  --cargo-arg=--lib \
  "${iterate[@]}" \
  -- -- chain:: check::sim:: || status=$?

echo "mutants.sh: results in $output/mutants.out/ (caught.txt, missed.txt, unviable.txt, timeout.txt)"
for kind in caught missed unviable timeout; do
  file=$output/mutants.out/$kind.txt
  [[ -f $file ]] && echo "  $kind: $(wc -l <"$file")"
done
# cargo-mutants exits 2 when some mutant was missed, 3 on a timeout.
exit "${status:-0}"
