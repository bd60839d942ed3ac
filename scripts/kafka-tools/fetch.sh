#!/usr/bin/env bash
# Fetches Apache Kafka's tools, clients and Kafka Streams (scripts/kafka-tools/pom.xml) from
# Maven Central into target/kafka-tools/lib, once: a second run with the jars present does
# nothing. `bin/` runs them with `java -cp`, `check.sh` drives a shardlog with them.
set -euo pipefail
cd "$(dirname "$0")/../.."
lib="target/kafka-tools/lib"
stamp="$lib/.fetched-$(sha256sum scripts/kafka-tools/pom.xml | cut -c1-16)"
if [ -f "$stamp" ]; then
    echo "Kafka jars already in $lib"
    exit 0
fi
rm -rf "$lib"
mkdir -p "$lib"
mvn -q -B -f scripts/kafka-tools/pom.xml dependency:copy-dependencies -DoutputDirectory="$PWD/$lib"
touch "$stamp"
echo "fetched $(ls "$lib"/*.jar | wc -l) jars into $lib"
