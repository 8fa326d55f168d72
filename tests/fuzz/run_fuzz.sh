#!/usr/bin/env bash
# tests/fuzz/run_fuzz.sh TARGET: runs fuzz_TARGET (from $CLOUDBRAIN_FUZZ_BIN_DIR, which CTest
# sets to the build's tests/fuzz) for $CLOUDBRAIN_FUZZ_SECONDS (20) on a copy of its seed corpus,
# then replays the seeds and every crash found so far. The mutations follow
# $CLOUDBRAIN_FUZZ_SEED (1), so that a run of the suite is repeatable and a crash it finds shows
# again on the next run; 0 takes a fresh random seed each time, for longer hunts. Fails on any
# crash, leak, timeout or sanitizer report, printing the input (base64) and where to keep it as
# a regression.
set -euo pipefail
target=${1:?usage: run_fuzz.sh TARGET}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
bin=${CLOUDBRAIN_FUZZ_BIN_DIR:?CLOUDBRAIN_FUZZ_BIN_DIR is not set: run through CTest}/fuzz_$target
[[ -x $bin ]] || { echo "run_fuzz.sh: no fuzz binary at $bin" >&2; exit 1; }
seconds=${CLOUDBRAIN_FUZZ_SECONDS:-20}
seed=${CLOUDBRAIN_FUZZ_SEED:-1}
seeds=$here/corpus/$target
regressions=$here/regressions/$target
[[ -d $seeds ]] && compgen -G "$seeds/*" >/dev/null || { echo "run_fuzz.sh: no seeds in $seeds" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cloudbrain-fuzz-$target.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp "$seeds"/* "$work/corpus/"
dict=()
[[ -f $here/$target.dict ]] && dict=(-dict="$here/$target.dict")

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# libFuzzer reports a crash itself; abort_on_error would hide its summary.
export ASAN_OPTIONS="$ASAN_OPTIONS:abort_on_error=0"

status=0
nice -n 10 "$bin" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -seed="$seed" -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1 || status=$?
grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' \
  "$work/log" || true
echo "fuzz_$target: $(ls "$work/corpus" | wc -l) inputs in the corpus after ${seconds}s, seed $seed" \
  "(started from $(ls "$seeds" | wc -l) seeds)"
if ((status != 0)); then
  tail -n 60 "$work/log"
  for crash in "$work"/artifacts/*; do
    [[ -f $crash ]] || continue
    echo "fuzz_$target: failing input $(basename "$crash") (base64; keep it as" \
      "tests/fuzz/regressions/$target/<name> and fix the code):"
    base64 -w 0 "$crash"
    echo
  done
  exit 1
fi

# The seeds and every crash found so far, once each.
replay=("$seeds")
[[ -d $regressions ]] && compgen -G "$regressions/*" >/dev/null && replay+=("$regressions")
"$bin" -runs=0 "${replay[@]}" >"$work/replay" 2>&1 || { tail -n 60 "$work/replay"; exit 1; }
echo "fuzz_$target: replayed $(ls "$seeds" | wc -l) seeds and" \
  "$( (ls "$regressions" 2>/dev/null || true) | wc -l) regressions cleanly"
