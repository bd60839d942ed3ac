"""kafka-python 3.x against a 3-node shardlog cluster while the test kills a partition leader's
node: an idempotent acks=all producer and a group consumer carry on.

Usage: kafka_python_failover.py BOOTSTRAP TOPIC SECONDS. Creates TOPIC (3 partitions,
replication factor 3, min.insync.replicas 2), then produces for SECONDS while a group member
consumes; prints "READY" once records flow (the test then kills a leader and restarts it). At the
end every acknowledged value must have been consumed and no two acknowledged values share an
offset. Prints one JSON line; exits non-zero with a message on the first failed check.
"""
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

PARTITIONS = 3
WAIT_S = 90


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    bootstrap, topic, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    servers = bootstrap.split(",")
    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=WAIT_S * 1000)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3,
                                  topic_configs={"min.insync.replicas": "2"})])
    admin.close()

    producer = KafkaProducer(bootstrap_servers=servers, enable_idempotence=True, acks="all", linger_ms=5,
                             retries=2**31 - 1, delivery_timeout_ms=60000, request_timeout_ms=10000,
                             metadata_max_age_ms=1000, retry_backoff_ms=100)
    consumer = KafkaConsumer(topic, bootstrap_servers=servers, group_id=f"{topic}-group",
                             auto_offset_reset="earliest", enable_auto_commit=True,
                             session_timeout_ms=10000, heartbeat_interval_ms=500, metadata_max_age_ms=1000)
    consumed = {}

    def poll(timeout_ms):
        for records in consumer.poll(timeout_ms=timeout_ms).values():
            for record in records:
                value = record.value.decode()
                consumed[value] = consumed.get(value, 0) + 1

    acked = {}
    pending = []
    start = time.time()
    sent = 0
    ready = False
    while time.time() - start < seconds:
        value = f"v{sent}"
        pending.append((value, producer.send(topic, key=f"k{sent}".encode(), value=value.encode())))
        sent += 1
        if len(pending) >= 20:
            # Bounded in flight: acknowledgements come back while the leader is down.
            for v, future in pending:
                md = future.get(timeout=WAIT_S)
                acked[v] = (md.partition, md.offset)
            pending = []
        poll(0)
        if not ready and len(acked) >= 50:
            print("READY", flush=True)
            ready = True
    for v, future in pending:
        md = future.get(timeout=WAIT_S)
        acked[v] = (md.partition, md.offset)
    producer.close()
    deadline = time.time() + WAIT_S
    while time.time() < deadline and not all(v in consumed for v in acked):
        poll(200)
    missing = [v for v in acked if v not in consumed]
    if missing:
        fail(f"{len(missing)} acknowledged values never consumed, e.g. {missing[:5]}")
    positions = sorted(acked.values())
    if len(set(positions)) != len(positions):
        fail("two values acknowledged at the same offset")
    consumer.close()
    print(json.dumps({
        "acked": len(acked),
        "duplicates_consumed": sum(1 for c in consumed.values() if c > 1),
    }), flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any client error fails the run with its message
        fail(f"kafka-python error: {type(e).__name__}: {e}")
