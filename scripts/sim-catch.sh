#!/usr/bin/env bash
# The simulator's catch table: for every injected bug (from the binary, so
# the list never goes stale) and each base seed, the run at which
# `table-check sim --seeds N` caught it, or "MISSED". Also the plain run
# (no bug), which must PASS from every base ("pass"; a run number there is a
# false alarm). Exit 1 if any bug was missed (but those the binary lists as
# shadowed by another check, marked *) or the plain run failed.
#
#   scripts/sim-catch.sh [base seed ...]     (default: 10 bases)
#   SIM_CATCH_SEEDS=2000 SIM_CATCH_JOBS=2 SIM_CATCH_BUGS="none stale-read" \
#   SIM_CATCH_BINARY=path/to/table-check
set -euo pipefail
cd "$(dirname "$0")/.."
check=${SIM_CATCH_BINARY:-target/release/table-check}
[[ -x $check ]] || cargo build --release --bin table-check
seeds=${SIM_CATCH_SEEDS:-2000}
jobs=${SIM_CATCH_JOBS:-1}
bases=("$@")
((${#bases[@]})) || bases=(1 11 222 3333 44444 555555 6666666 77777777 888888888 9999999999)
read -r -a bugs <<<"${SIM_CATCH_BUGS:-none $("$check" sim --list-bugs | cut -d' ' -f1 | tr '\n' ' ')}"
shadowed=" $("$check" sim --list-bugs | awk '$2 == "shadowed" { print $1 }' | tr '\n' ' ') "
durable=" $("$check" sim --list-bugs | awk '$2 == "durable" { print $1 }' | tr '\n' ' ') "
chains=" $("$check" sim --list-bugs | awk '$2 == "chains" { print $1 }' | tr '\n' ' ') "
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One cell: bug × base → run number, "pass" or MISSED, and its seconds.
cell() {
  local bug=$1 base=$2 flag=() start status=0 result
  [[ $bug == none ]] || flag=(--inject-bug "$bug")
  [[ $durable == *" $bug "* ]] && flag+=(--durable)
  [[ $chains == *" $bug "* ]] && flag+=(--chains 2)
  start=$(date +%s.%N)
  "$check" sim --seeds "$seeds" --seed "$base" "${flag[@]}" >"$out/$bug.$base.log" 2>&1 || status=$?
  if ((status == 1)); then
    result=$(grep --only-matching --max-count=1 'run [0-9]* of' "$out/$bug.$base.log" | cut -d' ' -f2)
  elif ((status == 0)); then
    result=$([[ $bug == none ]] && echo pass || echo MISSED)
  else
    result="exit$status"
  fi
  printf '%s %s %s %.1f\n' "$bug" "$base" "$result" "$(echo "$(date +%s.%N) - $start" | bc)" >"$out/$bug.$base"
}
export -f cell
export check seeds out durable chains

started=$(date +%s)
for bug in "${bugs[@]}"; do
  for base in "${bases[@]}"; do
    echo "$bug $base"
  done
done | xargs -P "$jobs" -n 2 bash -c 'cell "$0" "$1"'

printf '%-30s' "bug \\ base"
printf '%11s' "${bases[@]}"
echo
failed=0
for bug in "${bugs[@]}"; do
  mark=""
  [[ $shadowed == *" $bug "* ]] && mark="*"
  printf '%-30s' "$bug$mark"
  for base in "${bases[@]}"; do
    read -r _ _ result _ <"$out/$bug.$base"
    printf '%11s' "$result"
    if [[ $bug == none && $result != pass ]] || [[ $bug != none && -z $mark && ! $result =~ ^[0-9]+$ ]]; then
      failed=1
    fi
  done
  echo
done
total=$(cat "$out"/*[0-9] | awk '{ s += $4 } END { printf "%.0f", s }')
echo "$seeds seeds a cell; $total s of runs, $(($(date +%s) - started)) s wall"
if ((failed)); then
  echo "FAIL: a bug was missed, or the plain run failed"
  exit 1
fi
echo "PASS: every bug caught from every base, no false alarm"
