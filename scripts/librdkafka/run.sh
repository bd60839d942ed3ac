#!/usr/bin/env bash
# librdkafka's own numbered test suite (the `tests/` of Debian's librdkafka 2.0.2 source
# package) against a running shardlog:
#   scripts/librdkafka/run.sh BOOTSTRAP [TEST_LIST]
# TEST_LIST (default scripts/librdkafka/tests.txt) names the tests that apply, one per line:
# `NNNN quick|full  # why`. Each runs alone (`TESTS=NNNN ./test-runner -p1 -L`, -Q in quick
# mode), and each must pass: a failure fails the run (after the others ran), and the summary
# counts passed and failed tests. The tests that cannot pass here are listed with the reason in
# docs/kafka-compatibility.md.
#
# The source is fetched once with `apt-get source` (a deb-src entry for Debian's own mirror is
# added if missing) and built once into target/librdkafka/ (`./configure --disable-curl
# --disable-gssapi`), about 3 minutes on 2 cores. KAFKA_PATH points at Kafka's tools
# (scripts/kafka-tools, fetched by scripts/kafka-tools/fetch.sh) for the tests that run them.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
bootstrap="${1:?usage: run.sh BOOTSTRAP [TEST_LIST]}"
list="${2:-$repo/scripts/librdkafka/tests.txt}"
work="$repo/target/librdkafka"
version="2.0.2"
src="$work/librdkafka-$version"

if [ ! -x "$src/tests/test-runner" ]; then
    mkdir -p "$work"
    export DEBIAN_FRONTEND=noninteractive
    if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
        cat >/etc/apt/sources.list.d/shardlog-deb-src.sources <<SOURCES
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    fi
    apt-get update -qq
    apt-get install -y -qq build-essential libzstd-dev liblz4-dev libsasl2-dev rapidjson-dev libssl-dev \
        zlib1g-dev dpkg-dev >/dev/null
    (cd "$work" && apt-get source -qq "librdkafka=$version-1" >/dev/null 2>&1 || apt-get source -qq librdkafka >/dev/null)
    (cd "$src" && ./configure --disable-curl --disable-gssapi >/dev/null && make -j"$(nproc)" libs >/dev/null &&
        make -j"$(nproc)" -C tests build >/dev/null)
fi

cd "$src/tests"
host="${bootstrap%:*}"
cat >test.conf <<CONF
metadata.broker.list=$bootstrap
CONF
export TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-3.7.0}"
export KAFKA_PATH="$repo/scripts/kafka-tools"
export ZK_ADDRESS="${ZK_ADDRESS:-}"
export BROKERS="$bootstrap"
export LD_LIBRARY_PATH="$src/src:$src/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
passed=()
failed=()
skipped=()
start_all=$(date +%s)
while read -r number mode _rest; do
    case "$number" in '' | \#*) continue ;; esac
    flags=(-p1 -L)
    [ "$mode" = quick ] && flags+=(-Q)
    start=$(date +%s)
    if TESTS="$number" timeout 900 ./test-runner "${flags[@]}" >"$work/test-$number.log" 2>&1; then
        # A test that ran ends with "==== Test 0011_produce_batch PASSED ====".
        if grep -Eq "Test ${number}_[A-Za-z0-9_]+ PASSED" "$work/test-$number.log"; then
            passed+=("$number")
            echo "librdkafka $number ($mode): PASSED in $(($(date +%s) - start)) s"
        else
            skipped+=("$number")
            echo "librdkafka $number ($mode): SKIPPED ($(grep -Eo "${number}_[A-Za-z0-9_]+: [^|]*SKIP[^|]*" "$work/test-$number.log" | head -1))"
        fi
    else
        failed+=("$number")
        echo "librdkafka $number ($mode): FAILED in $(($(date +%s) - start)) s; last lines of its log:"
        tail -n 25 "$work/test-$number.log" | sed 's/^/    /'
    fi
done <"$list"
echo "librdkafka suite: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped in $(($(date +%s) - start_all)) s (against $host)"
# A listed test that skips is a failure too: the list names tests that run and pass here.
[ ${#failed[@]} -eq 0 ] && [ ${#skipped[@]} -eq 0 ]
