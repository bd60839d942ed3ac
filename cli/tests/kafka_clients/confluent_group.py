"""confluent-kafka (librdkafka) against shardlog's Kafka listener: admin create, a producer,
then two consumers in one group that split the partitions, and a rebalance when one leaves.

Usage: confluent_group.py BOOTSTRAP TOPIC. Prints one JSON line with what happened; exits
non-zero with a message on the first check that fails. Every wait is bounded.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4
RECORDS = 200
WAIT_S = 60


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def produce(bootstrap, topic, start, count):
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5})
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))

    for i in range(start, start + count):
        producer.produce(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode(), on_delivery=delivered)
    left = producer.flush(WAIT_S)
    if left or errors:
        fail(f"produce: {left} undelivered, errors {errors[:3]}")


def consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 200,
    })


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).items():
        future.result(WAIT_S)
    produce(bootstrap, topic, 0, RECORDS)

    group = f"{topic}-group"
    a, b = consumer(bootstrap, group), consumer(bootstrap, group)
    a.subscribe([topic])
    b.subscribe([topic])
    seen = {}  # value -> consumer name
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        for name, c in (("a", a), ("b", b)):
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                seen[msg.value().decode()] = name
        split = {name: {p.partition for p in c.assignment()} for name, c in (("a", a), ("b", b))}
        if len(seen) == RECORDS and split["a"] and split["b"]:
            break
    else:
        fail(f"two consumers: got {len(seen)}/{RECORDS} records, assignment {split}")
    if split["a"] & split["b"] or split["a"] | split["b"] != set(range(PARTITIONS)):
        fail(f"the members' partitions must be disjoint and cover the topic: {split}")
    both = sorted({v for v in seen.values()})

    # b leaves: a must get every partition and read new records from all of them.
    b.close()
    produce(bootstrap, topic, RECORDS, RECORDS)
    after = set()
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        msg = a.poll(0.2)
        if msg is not None and msg.error() is None and int(msg.value().decode().split("-")[1]) >= RECORDS:
            after.add(msg.value().decode())
        if len(after) == RECORDS and len(a.assignment()) == PARTITIONS:
            break
    else:
        fail(f"after b left: a has {sorted(p.partition for p in a.assignment())}, got {len(after)}/{RECORDS} new")
    a.close()
    print(json.dumps({"split": {k: sorted(v) for k, v in split.items()}, "consumers_with_records": both,
                      "after_leave": len(after)}))


if __name__ == "__main__":
    main()
