#!/usr/bin/env bash
# Apache Kafka's own tools against a running shardlog (`shardlog serve --kafka-listen`):
#   scripts/kafka-tools/check.sh BOOTSTRAP
# Needs the jars (scripts/kafka-tools/fetch.sh). Each block prints "OK <what>"; the first
# failure prints what was expected and what came back, and exits 1.
#  1. The console tutorial, verbatim: kafka-topics --create/--list/--describe, the console
#     producer with parse.key, the console consumer --from-beginning with print.key and
#     print.timestamp, kafka-topics --delete.
#  2. kafka-configs --describe / --alter (a topic's retention).
#  3. kafka-consumer-groups --list / --describe (lag) / --reset-offsets / --delete.
#  4. kafka-verifiable-producer and kafka-verifiable-consumer (what Kafka's and Redpanda's
#     compatibility tests use): every acked record is consumed.
#  5. Kafka Streams: the quickstart's word count into a table topic, end to end.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$here/bin"
B="${1:?usage: check.sh BOOTSTRAP}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() {
    echo "FAIL $1"
    shift
    printf '%s\n' "$@"
    exit 1
}
expect() { # expect WHAT PATTERN FILE
    grep -Eq -- "$2" "$3" || fail "$1" "expected /$2/ in:" "$(cat "$3")"
}

# ---- 1. the console tutorial -------------------------------------------------------------------
"$bin/kafka-topics.sh" --bootstrap-server "$B" --create --topic quickstart-events --partitions 3 \
    --replication-factor 1 >"$work/create" 2>&1
expect "kafka-topics --create" "Created topic quickstart-events" "$work/create"
"$bin/kafka-topics.sh" --bootstrap-server "$B" --list >"$work/list" 2>&1
expect "kafka-topics --list" "^quickstart-events$" "$work/list"
"$bin/kafka-topics.sh" --bootstrap-server "$B" --describe --topic quickstart-events >"$work/describe" 2>&1
expect "kafka-topics --describe" "PartitionCount: 3" "$work/describe"
expect "kafka-topics --describe partitions" "Partition: 2.*Leader: [0-9]+.*Replicas: [0-9]+.*Isr: [0-9]+" "$work/describe"
printf 'user1:first event\nuser2:second event\nuser1:third event\n' |
    "$bin/kafka-console-producer.sh" --bootstrap-server "$B" --topic quickstart-events \
        --property parse.key=true --property key.separator=: >"$work/produce" 2>&1 ||
    fail "kafka-console-producer" "$(cat "$work/produce")"
"$bin/kafka-console-consumer.sh" --bootstrap-server "$B" --topic quickstart-events --from-beginning \
    --property print.key=true --property print.timestamp=true --max-messages 3 --timeout-ms 30000 \
    >"$work/consume" 2>&1 || fail "kafka-console-consumer" "$(cat "$work/consume")"
expect "kafka-console-consumer print.key print.timestamp" "^CreateTime:[0-9]+	user1	first event$" "$work/consume"
expect "kafka-console-consumer third record" "^CreateTime:[0-9]+	user1	third event$" "$work/consume"
expect "kafka-console-consumer count" "Processed a total of 3 messages" "$work/consume"
echo "OK console tutorial (topics create/list/describe, producer parse.key, consumer print.key/print.timestamp)"

# ---- 2. kafka-configs ---------------------------------------------------------------------------
"$bin/kafka-configs.sh" --bootstrap-server "$B" --entity-type topics --entity-name quickstart-events \
    --alter --add-config retention.ms=86400000 >"$work/alter" 2>&1
expect "kafka-configs --alter" "Completed updating config" "$work/alter"
"$bin/kafka-configs.sh" --bootstrap-server "$B" --entity-type topics --entity-name quickstart-events \
    --describe >"$work/configs" 2>&1
expect "kafka-configs --describe" "retention.ms=86400000" "$work/configs"
"$bin/kafka-configs.sh" --bootstrap-server "$B" --entity-type topics --entity-name quickstart-events \
    --describe --all >"$work/configs-all" 2>&1
expect "kafka-configs --describe --all" "segment.bytes=" "$work/configs-all"
"$bin/kafka-configs.sh" --bootstrap-server "$B" --entity-type brokers --entity-name 0 --describe --all \
    >"$work/broker" 2>&1
expect "kafka-configs --describe broker" "num.partitions=" "$work/broker"
echo "OK kafka-configs --describe/--alter"

# ---- 3. kafka-consumer-groups -------------------------------------------------------------------
"$bin/kafka-console-consumer.sh" --bootstrap-server "$B" --topic quickstart-events --group tutorial-group \
    --from-beginning --max-messages 3 --timeout-ms 30000 >"$work/group-consume" 2>&1 ||
    fail "group consume" "$(cat "$work/group-consume")"
"$bin/kafka-consumer-groups.sh" --bootstrap-server "$B" --list >"$work/groups" 2>&1
expect "kafka-consumer-groups --list" "^tutorial-group$" "$work/groups"
"$bin/kafka-consumer-groups.sh" --bootstrap-server "$B" --describe --group tutorial-group >"$work/gdescribe" 2>&1
expect "kafka-consumer-groups --describe header" "CURRENT-OFFSET +LOG-END-OFFSET +LAG" "$work/gdescribe"
expect "kafka-consumer-groups --describe rows" "tutorial-group +quickstart-events +[0-2] +[0-9]+ +[0-9]+ +0 " "$work/gdescribe"
"$bin/kafka-consumer-groups.sh" --bootstrap-server "$B" --group tutorial-group --topic quickstart-events \
    --reset-offsets --to-earliest --execute >"$work/reset" 2>&1
expect "kafka-consumer-groups --reset-offsets" "NEW-OFFSET" "$work/reset"
"$bin/kafka-consumer-groups.sh" --bootstrap-server "$B" --describe --group tutorial-group >"$work/gdescribe2" 2>&1
lag=$(awk '$1 == "tutorial-group" && $2 == "quickstart-events" { s += $6 } END { print s + 0 }' "$work/gdescribe2")
[ "$lag" = 3 ] || fail "lag after --reset-offsets --to-earliest" "expected 3, got $lag in:" "$(cat "$work/gdescribe2")"
"$bin/kafka-consumer-groups.sh" --bootstrap-server "$B" --delete --group tutorial-group >"$work/gdelete" 2>&1
expect "kafka-consumer-groups --delete" "successful" "$work/gdelete"
"$bin/kafka-consumer-groups.sh" --bootstrap-server "$B" --list >"$work/groups2" 2>&1
if grep -q '^tutorial-group$' "$work/groups2"; then fail "group still listed after --delete" "$(cat "$work/groups2")"; fi
echo "OK kafka-consumer-groups --list/--describe/--reset-offsets/--delete"

"$bin/kafka-topics.sh" --bootstrap-server "$B" --delete --topic quickstart-events >"$work/delete" 2>&1 ||
    fail "kafka-topics --delete" "$(cat "$work/delete")"
"$bin/kafka-topics.sh" --bootstrap-server "$B" --list >"$work/list2" 2>&1
if grep -q '^quickstart-events$' "$work/list2"; then fail "topic still listed after --delete" "$(cat "$work/list2")"; fi
echo "OK kafka-topics --delete"

# ---- 4. verifiable producer and consumer --------------------------------------------------------
"$bin/kafka-topics.sh" --bootstrap-server "$B" --create --topic verifiable --partitions 2 \
    --replication-factor 1 >/dev/null 2>&1
"$bin/kafka-verifiable-producer.sh" --bootstrap-server "$B" --topic verifiable --max-messages 1000 --acks -1 \
    >"$work/vproduce" 2>/dev/null || fail "verifiable producer" "$(tail -5 "$work/vproduce")"
acked=$(grep -c '"name":"producer_send_success"' "$work/vproduce" || true)
[ "$acked" = 1000 ] || fail "verifiable producer acks" "expected 1000 acked, got $acked" "$(grep -v send_success "$work/vproduce" | tail -5)"
timeout 120 "$bin/kafka-verifiable-consumer.sh" --bootstrap-server "$B" --topic verifiable --group-id verifiable-group \
    --max-messages 1000 --reset-policy earliest >"$work/vconsume" 2>/dev/null ||
    fail "verifiable consumer" "$(tail -5 "$work/vconsume")"
consumed=$(grep -o '"name":"records_consumed","count":[0-9]*' "$work/vconsume" | awk -F: '{ s += $NF } END { print s + 0 }')
[ "$consumed" -ge 1000 ] || fail "verifiable consumer count" "expected 1000 consumed, got $consumed"
expect "verifiable consumer commits" '"name":"offsets_committed".*"success":true' "$work/vconsume"
echo "OK kafka-verifiable-producer/consumer (1000 acked, $consumed consumed)"

# ---- 5. Kafka Streams word count ----------------------------------------------------------------
"$bin/kafka-topics.sh" --bootstrap-server "$B" --create --topic streams-plaintext-input --partitions 1 \
    --replication-factor 1 >/dev/null 2>&1
"$bin/kafka-topics.sh" --bootstrap-server "$B" --create --topic streams-wordcount-output --partitions 1 \
    --replication-factor 1 --config cleanup.policy=compact >/dev/null 2>&1
printf 'all streams lead to kafka\nhello kafka streams\njoin kafka summit\n' |
    "$bin/kafka-console-producer.sh" --bootstrap-server "$B" --topic streams-plaintext-input >/dev/null 2>&1
libs="${SHARDLOG_KAFKA_LIBS:-$here/../../target/kafka-tools/lib}"
# Its local state lives under $work (java.io.tmpdir), so every run starts from the topics alone.
java -Xmx256m -XX:+UseSerialGC -Djava.io.tmpdir="$work" -Dorg.slf4j.simpleLogger.defaultLogLevel=error \
    -cp "$libs/*" "$here/streams/WordCount.java" "$B" "wordcount-check-$$" 20 >"$work/streams" 2>&1 ||
    fail "Kafka Streams word count" "$(tail -20 "$work/streams")"
"$bin/kafka-console-consumer.sh" --bootstrap-server "$B" --topic streams-wordcount-output --from-beginning \
    --formatter org.apache.kafka.tools.consumer.DefaultMessageFormatter --property print.key=true \
    --property key.deserializer=org.apache.kafka.common.serialization.StringDeserializer \
    --property value.deserializer=org.apache.kafka.common.serialization.LongDeserializer \
    --max-messages 11 --timeout-ms 30000 >"$work/counts" 2>&1 || fail "word counts" "$(cat "$work/counts")"
expect "word count kafka=3" "^kafka	3$" "$work/counts"
expect "word count streams=2" "^streams	2$" "$work/counts"
echo "OK Kafka Streams word count (table topic streams-wordcount-output)"
echo "ALL OK"
