#!/usr/bin/env bash
# Runs a class of Apache Kafka's tools with the jars scripts/kafka-tools/fetch.sh fetched, as
# Kafka's own bin/kafka-run-class.sh does (librdkafka's tests call these scripts via KAFKA_PATH).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
libs="${SHARDLOG_KAFKA_LIBS:-$here/../../../target/kafka-tools/lib}"
if [ ! -d "$libs" ]; then
    echo "no Kafka jars in $libs: run scripts/kafka-tools/fetch.sh" >&2
    exit 2
fi
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$libs/*" "$@"
