#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a set time each (issue #6, part 4).
#
#   scripts/fuzz.sh TARGET|all [--seconds N]    # default 30 s per target
#   scripts/fuzz.sh --make-seeds                # regenerate fuzz/seeds/ from valid messages
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz --locked`). Each target starts from
# its committed seeds (fuzz/seeds/TARGET) plus what earlier runs found (target/fuzz-corpus/,
# not committed). libFuzzer limits: -rss_limit_mb (memory per process), -timeout (seconds for
# one input: a hang fails), -max_len (bytes per input), and -malloc_limit_mb (one allocation).
# A crash leaves its input in fuzz/artifacts/TARGET/ and makes this script fail.
#
# Targets:
#   native_frame      protocol/frame.rs + protocol/codec.rs: frames and request/response decoding
#   record_batch      engine batch parser: validate, records(), split_batches, peek_batch_size
#   segment_recovery  engine recovery scan of a segment from arbitrary bytes
#   kafka_request     kafka/connection.rs `decode` (header, API/version dispatch, every served
#                     API's body) over a byte stream, and the responses built without a shard
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(native_frame record_batch segment_recovery kafka_request)
RSS_LIMIT_MB=2048
MALLOC_LIMIT_MB=256
TIMEOUT_S=10
MAX_LEN_BYTES=65536

usage() { echo "usage: $0 TARGET|all [--seconds N] | --make-seeds   (targets: ${TARGETS[*]})" >&2; exit 2; }

[ $# -ge 1 ] || usage
if [ "$1" = "--make-seeds" ]; then
    (cd fuzz && cargo run --quiet --bin make_seeds)
    exit 0
fi
which_target=$1
shift
seconds=30
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=${2:?}; shift 2 ;;
        *) usage ;;
    esac
done
if [ "$which_target" = all ]; then
    run=("${TARGETS[@]}")
else
    printf '%s\n' "${TARGETS[@]}" | grep -qx "$which_target" || usage
    run=("$which_target")
fi

cargo +nightly fuzz --version >/dev/null 2>&1 || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2; exit 1; }

build_start=$(date +%s)
for target in "${run[@]}"; do
    cargo +nightly fuzz build --fuzz-dir fuzz "$target"
done
echo "fuzz: build took $(( $(date +%s) - build_start )) s"

for target in "${run[@]}"; do
    corpus="target/fuzz-corpus/$target"
    mkdir -p "$corpus"
    log="target/fuzz-$target.log"
    echo "fuzz: $target for $seconds s"
    if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb="$RSS_LIMIT_MB" -malloc_limit_mb="$MALLOC_LIMIT_MB" \
        -timeout="$TIMEOUT_S" -max_len="$MAX_LEN_BYTES" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED (input in fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    execs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz: $target ok: ${execs:-?} executions in $seconds s, corpus $(ls "$corpus" | wc -l) files"
done
