#!/usr/bin/env bash
# shardlog beside Apache Kafka 4.1, same machine, same run (issue #14, docs/benchmarks.md
# "shardlog vs Apache Kafka"). Starts a single-node KRaft Kafka (the jars
# scripts/kafka-tools/fetch.sh fetches from Maven Central; `java -cp`) and a `shardlog serve`
# with its Kafka listener, both with data on the same disk, then runs the same workloads
# against each, alternating which goes first, with:
#   - shardlog-loadgen --protocol kafka (open loop, same-run baselines, hiccup meter, CPU per
#     message of the broker process from /proc/PID/stat);
#   - Kafka's own kafka-producer-perf-test (org.apache.kafka.tools.ProducerPerformance);
#   - an unchanged librdkafka client at fixed rates (scripts/bench/rdkafka_latency.py).
# Durable means fsync per batch on both (Kafka flush.messages=1; shardlog durability sync,
# which is what flush.messages=1 maps to), acks=all; non-durable is Kafka's default (page
# cache) against shardlog durability none, acks=1.
#
#   bash scripts/bench/vs-kafka.sh            # ~25 min; REPS=1 DURATION_S=5 for ~8 min
#   OUT=dir SCENARIOS="durable-max none-max" bash scripts/bench/vs-kafka.sh
#   PARTS="perf rdkafka" bash scripts/bench/vs-kafka.sh   # only some of the three parts
#
# Reports (JSON per run, perf-test and librdkafka output) go to $OUT (default
# target/vs-kafka/DATE); summary.md there holds the shardlog ÷ Kafka table.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
reps=${REPS:-2}
duration=${DURATION_S:-10}
out=${OUT:-target/vs-kafka/$(date -u +%Y%m%d-%H%M%S)}
scenarios=${SCENARIOS:-"durable-max durable-1k durable-10k durable-50pct none-max none-1k none-10k iggy"}
parts=${PARTS:-"loadgen perf rdkafka"}
has_part() { case " $parts " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if ! has_part loadgen; then scenarios=""; fi
# Non-durable topics say so explicitly: Long.MAX ("never") is Kafka's default for both flush
# settings, so Kafka runs exactly as with no config, while shardlog maps it to durability
# none. Without it a shardlog topic gets shardlog's default, sync (an fdatasync per ack).
never=9223372036854775807
mkdir -p "$out"
out=$(cd "$out" && pwd)

cargo build --release -p shardlog -p shardlog-loadgen
bash scripts/kafka-tools/fetch.sh >/dev/null
libs="$root/target/kafka-tools/lib"
loadgen="$root/target/release/shardlog-loadgen"
parent=${SHARDLOG_TEST_DIR:-/tmp}
work=$(mktemp -d "$parent/shardlog-vs-kafka-XXXXXX")
kafka_pid=""
shardlog_pid=""
cleanup() {
    set +e
    for pid in $kafka_pid $shardlog_pid; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# ---- Apache Kafka: single-node KRaft (broker and controller in one process) ------------------
kafka_port=$(free_port)
controller_port=$(free_port)
mkdir -p "$work/kafka"
cat >"$work/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$work/kafka/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.segment.delete.delay.ms=1000
EOF
java -cp "$libs/*" kafka.tools.StorageTool format -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)" \
    -c "$work/kafka/server.properties" >"$work/kafka/format.log" 2>&1
# Kafka's own default heap for a broker (bin/kafka-server-start.sh): 1 GiB, G1.
java -Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -cp "$libs/*" kafka.Kafka "$work/kafka/server.properties" \
    >"$work/kafka/server.log" 2>&1 &
kafka_pid=$!
wait_port "$kafka_port" || { tail -20 "$work/kafka/server.log"; exit 1; }
kafka_boot="127.0.0.1:$kafka_port"

# ---- shardlog -----------------------------------------------------------------------------------
./target/release/shardlog serve --data-dir "$work/shardlog" --listen 127.0.0.1:0 --shards 2 --no-pin \
    --kafka-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 >"$work/shardlog.ports" 2>"$work/shardlog.stderr" &
shardlog_pid=$!
for _ in $(seq 1 100); do
    grep -q '^  kafka: ' "$work/shardlog.ports" 2>/dev/null && break
    sleep 0.1
done
shardlog_boot=$(sed -n 's/^  kafka: //p' "$work/shardlog.ports")
[ -n "$shardlog_boot" ] || { cat "$work/shardlog.stderr"; exit 1; }
echo "Kafka 4.1 at $kafka_boot (pid $kafka_pid), shardlog at $shardlog_boot (pid $shardlog_pid); reports in $out"

broker_boot() { if [ "$1" = kafka ]; then echo "$kafka_boot"; else echo "$shardlog_boot"; fi; }
broker_pid() { if [ "$1" = kafka ]; then echo "$kafka_pid"; else echo "$shardlog_pid"; fi; }

# The OMB-style workload: 1 KiB values, 100 partitions, 4 producers, no consumer during the
# produce runs (the iggy scenario reads afterwards).
scenario_args() {
    local common=(--partitions 100 --producers 4 --groups 0 --message-size 1KiB --duration-s "$duration" --warmup-s 2)
    local durable=(--acks durable --durability sync)
    local none=(--acks leader --durability none)
    case "$1" in
        durable-max) echo "${common[@]} ${durable[@]} --rate max" ;;
        durable-1k) echo "${common[@]} ${durable[@]} --rate 1000 --linger-ms 0" ;;
        durable-10k) echo "${common[@]} ${durable[@]} --rate 10000 --linger-ms 0" ;;
        durable-50pct) echo "${common[@]} ${durable[@]} --rate 50%-of-max --probe-s 5" ;;
        none-max) echo "${common[@]} ${none[@]} --rate max" ;;
        none-1k) echo "${common[@]} ${none[@]} --rate 1000 --linger-ms 0" ;;
        none-10k) echo "${common[@]} ${none[@]} --rate 10000 --linger-ms 0" ;;
        # Iggy's benchmark shape: 2 producers, 1000-byte messages in batches of 1000, fsync on;
        # then 2 consumers read it all back.
        iggy) echo "--partitions 2 --producers 2 --message-size 1000 --batch-bytes 1000000 --acks durable \
                    --durability sync --backlog-bytes 2GB --groups 1 --consumers 2 --duration-s 30" ;;
        *) echo "unknown scenario $1" >&2; return 2 ;;
    esac
}

run_loadgen() { # scenario broker rep
    local args
    args=$(scenario_args "$1")
    # shellcheck disable=SC2086 # the scenario's arguments are words
    "$loadgen" --name "$1-$2" --protocol kafka --broker "$(broker_boot "$2")" --broker-pid "$(broker_pid "$2")" \
        --dir "$parent" --baseline all --baseline-disk-bytes 256MiB $args --json "$out/$1-$2-r$3.json" \
        >"$out/$1-$2-r$3.txt" 2>&1 || echo "loadgen run $1 on $2 failed (see $out/$1-$2-r$3.txt)"
}

for rep in $(seq 1 "$reps"); do
    for scenario in $scenarios; do
        # Alternate which broker goes first, so neither always gets the cooler disk.
        if [ $(( rep % 2 )) -eq 1 ]; then order="shardlog kafka"; else order="kafka shardlog"; fi
        for broker in $order; do
            echo "== rep $rep: $scenario on $broker"
            run_loadgen "$scenario" "$broker" "$rep"
            grep -E "^(publish \(|consume |hiccup|CPU per)" "$out/$scenario-$broker-r$rep.txt" | sed 's/^/   /' || true
        done
    done
done

# ---- Kafka's own producer perf test, against both -------------------------------------------
cpu_ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
perf_records=${PERF_RECORDS:-1000000}
for broker in $(has_part perf && echo shardlog kafka); do
    for mode in durable none; do
        topic="perf-$mode-$(date +%s%N)"
        configs=(--config flush.messages=$never --config flush.ms=$never)
        acks=1
        if [ "$mode" = durable ]; then configs=(--config flush.messages=1); acks=all; fi
        "$root/scripts/kafka-tools/bin/kafka-topics.sh" --bootstrap-server "$(broker_boot $broker)" --create \
            --topic "$topic" --partitions 100 --replication-factor 1 "${configs[@]}" >/dev/null
        sleep 1
        before=$(cpu_ticks "$(broker_pid $broker)")
        KAFKA_HEAP_OPTS=-Xmx1g "$root/scripts/kafka-tools/bin/kafka-run-class.sh" \
            org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$perf_records" \
            --record-size 1024 --throughput -1 \
            --producer-props bootstrap.servers="$(broker_boot $broker)" acks=$acks linger.ms=1 batch.size=131072 \
            >"$out/perf-$mode-$broker.txt" 2>&1 || echo "perf test $mode on $broker failed"
        after=$(cpu_ticks "$(broker_pid $broker)")
        echo "broker_cpu_us_per_msg $(python3 -c "import os; print(($after - $before) / os.sysconf('SC_CLK_TCK') * 1e6 / $perf_records)")" \
            >>"$out/perf-$mode-$broker.txt"
        "$root/scripts/kafka-tools/bin/kafka-topics.sh" --bootstrap-server "$(broker_boot $broker)" --delete \
            --topic "$topic" >/dev/null 2>&1 || true
        echo "== perf test $mode on $broker: $(tail -2 "$out/perf-$mode-$broker.txt" | head -1)"
    done
done

# ---- An unchanged librdkafka client at fixed rates, against both ------------------------------
if has_part rdkafka && python3 -c "import confluent_kafka" 2>/dev/null; then
    for rate in 1000 10000; do
        for mode in durable none; do
            for broker in shardlog kafka; do
                flags=(--acks 1)
                if [ "$mode" = durable ]; then flags=(--acks all --durable); fi
                python3 scripts/bench/rdkafka_latency.py "$(broker_boot $broker)" --rate "$rate" \
                    --seconds "$duration" "${flags[@]}" >"$out/rdkafka-$mode-$rate-$broker.json" \
                    2>"$out/rdkafka-$mode-$rate-$broker.err" || echo "librdkafka run $mode $rate on $broker failed"
                echo "== librdkafka $mode $rate msg/s on $broker: $(cat "$out/rdkafka-$mode-$rate-$broker.json")"
            done
        done
    done
fi

python3 scripts/bench/vs_kafka_summary.py "$out" | tee "$out/summary.md"
