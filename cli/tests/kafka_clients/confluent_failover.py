"""confluent-kafka (librdkafka) against a 3-node shardlog cluster while the test kills a
partition leader's node: an idempotent acks=all producer and a group consumer carry on.

Usage: confluent_failover.py BOOTSTRAP TOPIC SECONDS. Creates TOPIC (3 partitions, replication
factor 3, min.insync.replicas 2), then produces for SECONDS while a group member consumes and
commits; prints "READY" once records flow (the test then kills a leader and restarts it). At the
end every acknowledged value must have been consumed, and the log must hold each exactly once
(the producer is idempotent). A second member of the group then starts from the committed
offsets. Prints one JSON line; exits non-zero with a message on the first failed check.
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3
WAIT_S = 90


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 200,
        "topic.metadata.refresh.interval.ms": 1000,
    })


def main():
    bootstrap, topic, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
    for _, future in admin.create_topics([new]).items():
        future.result(WAIT_S)

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    acked = {}  # value -> (partition, offset)
    errors = []
    last_ack = [time.time()]
    longest_stall = [0.0]

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
            return
        now = time.time()
        longest_stall[0] = max(longest_stall[0], now - last_ack[0])
        last_ack[0] = now
        acked[msg.value().decode()] = (msg.partition(), msg.offset())

    group = f"{topic}-group"
    member = consumer(bootstrap, group)
    member.subscribe([topic])
    consumed = {}  # value -> count

    def poll(c, timeout):
        msg = c.poll(timeout)
        if msg is not None and msg.error() is None:
            value = msg.value().decode()
            consumed[value] = consumed.get(value, 0) + 1

    start = time.time()
    sent = 0
    ready = False
    while time.time() - start < seconds:
        producer.produce(topic, key=f"k{sent}".encode(), value=f"v{sent}".encode(), on_delivery=delivered)
        sent += 1
        producer.poll(0)
        poll(member, 0.01)
        if not ready and len(acked) >= 50:
            print("READY", flush=True)
            ready = True
    left = producer.flush(WAIT_S)
    if left or errors:
        fail(f"produce: {left} undelivered of {sent}, errors {errors[:3]}")
    if len(acked) != sent:
        fail(f"{sent} sent, {len(acked)} acknowledged")
    deadline = time.time() + WAIT_S
    while time.time() < deadline and not all(v in consumed for v in acked):
        poll(member, 0.2)
    missing = [v for v in acked if v not in consumed]
    if missing:
        fail(f"{len(missing)} acknowledged values never consumed, e.g. {missing[:5]}")
    # Every (partition, offset) acknowledged once: the idempotent producer stored no value twice.
    positions = sorted(acked.values())
    if len(set(positions)) != len(positions):
        fail("two values acknowledged at the same offset")

    # The group's committed offsets are where the member got to; a new member resumes there.
    try:
        member.commit(asynchronous=False)
    except KafkaException as e:
        # Auto-commit already stored everything: nothing left to commit.
        if e.args[0].code() != KafkaError._NO_OFFSET:
            raise
    committed = member.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=WAIT_S)
    member.close()
    ends = {}
    for partition, offset in acked.values():
        ends[partition] = max(ends.get(partition, -1), offset + 1)
    for tp in committed:
        if tp.offset != ends.get(tp.partition, 0):
            fail(f"partition {tp.partition}: committed {tp.offset}, expected {ends.get(tp.partition, 0)}")
    producer.produce(topic, value=b"after")
    producer.flush(WAIT_S)
    second = consumer(bootstrap, group)
    second.subscribe([topic])
    again = []
    deadline = time.time() + WAIT_S
    while time.time() < deadline and "after" not in again:
        msg = second.poll(0.2)
        if msg is not None and msg.error() is None:
            again.append(msg.value().decode())
    second.close()
    if again != ["after"]:
        fail(f"the second member should read only the new record, got {again[:5]} ({len(again)})")
    print(json.dumps({
        "acked": len(acked),
        "duplicates_consumed": sum(1 for c in consumed.values() if c > 1),
        "longest_ack_stall_s": round(longest_stall[0], 3),
    }), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        fail(f"kafka error: {e}")
