#!/usr/bin/env bash
# `make fuzz`: every fuzz target of keel (keel_init::fuzzing::all(), one [[bin]] each in
# fuzz/Cargo.toml) under libFuzzer via cargo-fuzz, FUZZ_SECS seconds each (default 60),
# seeded from the committed corpus fuzz/corpus/TARGET/ (read only) into a scratch corpus
# target/fuzz/corpus/TARGET/. Crashing inputs are saved as fuzz/artifacts/TARGET/crash-*.
# Installs cargo-fuzz from crates.io when it is missing; builds with RUSTC_BOOTSTRAP=1
# (the sanitizer flags are unstable). Ends with one line per target: executions, corpus
# size, crashes; exits 1 when a target crashed.
#
#   FUZZ_SECS=600 make fuzz                    longer
#   FUZZ_TARGETS="dhcp_packet oci_json" make fuzz   some targets only
#   FUZZ_DRY_RUN=1 make fuzz                   print the commands, run nothing
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."

secs=${FUZZ_SECS:-60}
dry=${FUZZ_DRY_RUN:-}
all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -vx 'keel-fuzz')
targets=${FUZZ_TARGETS:-$all}
for t in $targets; do
    grep -qx "$t" <<<"$all" || { echo "fuzz: no target called $t (targets: $(echo $all))" >&2; exit 2; }
done

run() {
    if [[ -n $dry ]]; then echo "$*"; else "$@"; fi
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    run cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
# -a: debug assertions and overflow checks on, so an overflow is a crash too.
build=(--fuzz-dir fuzz -a)
run cargo fuzz build "${build[@]}"

summary=()
crashed=0
for t in $targets; do
    work=target/fuzz/corpus/$t
    log=target/fuzz/logs/$t.log
    run mkdir -p "$work" "fuzz/artifacts/$t" target/fuzz/logs
    found=("fuzz/artifacts/$t"/*)
    before=${#found[@]}
    cmd=(cargo fuzz run "${build[@]}" "$t" "$work" "fuzz/corpus/$t" --
        "-max_total_time=$secs" "-artifact_prefix=fuzz/artifacts/$t/" -print_final_stats=1
        -timeout=10 -rss_limit_mb=2048 -max_len=65536)
    if [[ -n $dry ]]; then
        echo "${cmd[*]} > $log 2>&1"
        continue
    fi
    echo "fuzz: $t for ${secs}s"
    status=0
    "${cmd[@]}" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
    found=("fuzz/artifacts/$t"/*)
    after=${#found[@]}
    crashes=$((after - before))
    if [[ $status -ne 0 ]]; then
        crashed=1
        [[ $crashes -gt 0 ]] || crashes="failed (exit $status, see $log)"
    fi
    summary+=("$(printf '%-16s executions %-10s corpus %-12s crashes %s' "$t" "${execs:-?}" "${corpus:-?}" "$crashes")")
done

if [[ -z $dry ]]; then
    echo "fuzz: ${secs}s per target (logs in target/fuzz/logs, crashes in fuzz/artifacts)"
    printf '%s\n' "${summary[@]}"
fi
exit $crashed
