"""confluent-kafka (librdkafka) consumers with KIP-848's group.protocol=consumer against
shardlog: the broker assigns (group.remote.assignor), reconciles, and checks member epochs on
commits.

Usage: confluent_consumer_protocol.py BOOTSTRAP TOPIC ASSIGNOR. Three consumers share a
4-partition topic without overlap and read every record exactly once between them (each
record's offset committed synchronously before the next poll); the admin client sees the
group as a "consumer" group with the assignor and three members; one consumer leaves and the
other two take its partitions and read everything produced after, once; a static member
(group.instance.id) that closes keeps its partitions for its restart, which gets them back;
a consumer naming an unknown assignor gets a fatal error. Prints one JSON line; exits non-zero with a message on
the first check that fails. Every wait is bounded.
"""
import faulthandler
import json
import os
import sys
import time

from confluent_kafka import Consumer, ConsumerGroupType, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4
RECORDS = 200
WAIT_S = 60
# The whole script's bound: a librdkafka call that never returns (a synchronous commit or a
# close waiting on the group) must fail the test, not hang it. faulthandler's watchdog is a C
# thread: it fires even while the main thread is blocked inside librdkafka (a Python signal
# handler would wait for that call to return), prints every thread's stack and exits 1.
SCRIPT_DEADLINE_S = 300


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def produce(bootstrap, topic, start, count):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))

    for i in range(start, start + count):
        # Round-robin over the partitions, so every one has records.
        producer.produce(topic, partition=i % PARTITIONS, value=f"value-{i}".encode(), on_delivery=delivered)
    left = producer.flush(WAIT_S)
    if left or errors:
        fail(f"produce: {left} undelivered, errors {errors[:3]}")


def consumer(bootstrap, group, assignor, name, instance=None):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "group.remote.assignor": assignor,
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if instance is not None:
        config["group.instance.id"] = instance
    if os.environ.get("RDKAFKA_DEBUG"):
        config["debug"] = os.environ["RDKAFKA_DEBUG"]
    return Consumer(config)


def partitions_of(c):
    return sorted(p.partition for p in c.assignment())


def poll_until(consumers, settled):
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.1)
        if settled():
            return True
    return False


def poll_into(name, c, seen, duplicates):
    """Polls once; a record is counted, then its offset committed before the next poll."""
    msg = c.poll(0.1)
    if msg is None:
        return
    if msg.error() is not None:
        fail(f"{name}: {msg.error()}")
    value = msg.value().decode()
    if value in seen:
        duplicates.append((value, seen[value], name))
    seen[value] = name
    commit(c, msg)


def commit(c, msg):
    """Commits synchronously, as an application would: a commit racing a reconciliation may
    carry an epoch the group just moved past (STALE_MEMBER_EPOCH, as Kafka answers it too);
    the member learns its new epoch from its next heartbeat, so poll briefly (serving the
    rebalance) and retry. A record that poll returns meanwhile is handed back (seek), to be
    read again by the loop."""
    deadline = time.time() + WAIT_S
    while True:
        try:
            c.commit(message=msg, asynchronous=False)
            return
        except KafkaException as e:
            if e.args[0].code() != KafkaError.STALE_MEMBER_EPOCH or time.time() > deadline:
                raise
            early = c.poll(0.1)
            if early is not None and early.error() is None:
                c.seek(TopicPartition(early.topic(), early.partition(), early.offset()))


def assignments(consumers):
    return {name: {p.partition for p in c.assignment()} for name, c in consumers.items()}


def disjoint_cover(split):
    union = set()
    for parts in split.values():
        if union & parts:
            return False
        union |= parts
    return union == set(range(PARTITIONS))


def consume_until(consumers, seen, duplicates, want, settled):
    """Polls every consumer until `want` records were seen and `settled(split)` holds."""
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        for name, c in consumers.items():
            poll_into(name, c, seen, duplicates)
        split = assignments(consumers)
        if len(seen) >= want and settled(split):
            return split
    fail(f"got {len(seen)}/{want} records, assignment {assignments(consumers)}")


def main():
    faulthandler.dump_traceback_later(SCRIPT_DEADLINE_S, exit=True)
    bootstrap, topic, assignor = sys.argv[1], sys.argv[2], sys.argv[3]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).items():
        future.result(WAIT_S)
    produce(bootstrap, topic, 0, RECORDS)

    group = f"{topic}-group"
    consumers = {name: consumer(bootstrap, group, assignor, name) for name in ("a", "b", "c")}
    for c in consumers.values():
        c.subscribe([topic])
    seen, duplicates = {}, []
    # Settled: disjoint, covering the topic, every member holding some (2/1/1).
    split = consume_until(consumers, seen, duplicates, RECORDS,
                          lambda s: disjoint_cover(s) and all(s.values()))
    if sorted(len(p) for p in split.values()) != [1, 1, 2]:
        fail(f"4 partitions over 3 members must be 2/1/1: {split}")
    if duplicates:
        fail(f"records read twice: {duplicates[:5]}")

    # The admin client sees a KIP-848 group with the assignor and every member's partitions.
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(WAIT_S)
    if group not in {g.group_id for g in listed.valid}:
        fail(f"{group} not listed as a consumer group: {[g.group_id for g in listed.valid]}")
    described = admin.describe_consumer_groups([group])[group].result(WAIT_S)
    described_parts = sorted(tp.partition for m in described.members for tp in m.assignment.topic_partitions)
    if (described.type != ConsumerGroupType.CONSUMER or described.partition_assignor != assignor
            or len(described.members) != 3 or described_parts != list(range(PARTITIONS))):
        fail(f"described: type {described.type}, assignor {described.partition_assignor}, "
             f"{len(described.members)} members holding {described_parts}")

    # Committed offsets (with member epochs) cover every record.
    committed = consumers["a"].committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=WAIT_S)
    if sum(tp.offset for tp in committed) != RECORDS:
        fail(f"committed offsets {[(tp.partition, tp.offset) for tp in committed]} do not add up to {RECORDS}")

    # c leaves: a and b take its partitions and read what comes next, once.
    left = sorted(split["c"])
    consumers.pop("c").close()
    produce(bootstrap, topic, RECORDS, RECORDS)
    after = consume_until(consumers, seen, duplicates, 2 * RECORDS, disjoint_cover)
    if duplicates:
        fail(f"records read twice after c left: {duplicates[:5]}")
    by = {}
    for value, name in seen.items():
        if int(value.split("-")[1]) >= RECORDS:
            by[name] = by.get(name, 0) + 1
    if by.get("c") or sum(by.values()) != RECORDS:
        fail(f"after c left the new records went to {by}")
    for c in consumers.values():
        c.close()

    # Static members: one closes (leaving with epoch -2, "back soon"); the other does not get
    # its partitions; its restart (a new process, the same group.instance.id) gets them back.
    static = f"{group}-static"
    s1, other = (consumer(bootstrap, static, assignor, n, instance=n) for n in ("s1", "s2"))
    for c in (s1, other):
        c.subscribe([topic])
    if not poll_until([s1, other], lambda: len(s1.assignment()) == 2 and len(other.assignment()) == 2):
        fail(f"static members: {partitions_of(s1)} and {partitions_of(other)}")
    before, theirs = partitions_of(s1), partitions_of(other)
    s1.close()
    # Longer than the heartbeat interval (5 s): the other member heartbeats meanwhile.
    deadline = time.time() + 6
    while time.time() < deadline:
        other.poll(0.1)
    if partitions_of(other) != theirs:
        fail(f"a static member left for now, yet the other took its partitions: {partitions_of(other)}")
    back = consumer(bootstrap, static, assignor, "s1-again", instance="s1")
    back.subscribe([topic])
    if not poll_until([back, other], lambda: partitions_of(back) == before):
        fail(f"the restarted static member got {partitions_of(back)}, not its {before}")
    for c in (back, other):
        c.close()

    # An assignor the broker does not run: a fatal error, not a silent consumer.
    bad = consumer(bootstrap, f"{group}-bad", "no-such-assignor", "bad")
    bad.subscribe([topic])
    error = None
    deadline = time.time() + WAIT_S
    while error is None and time.time() < deadline:
        try:
            msg = bad.poll(0.2)
        except KafkaException as e:
            error = str(e)
            break
        if msg is not None and msg.error() is not None:
            error = str(msg.error())
        elif msg is not None:
            fail("a consumer with an unknown assignor read a record")
    bad.close()
    if error is None or "assignor" not in error.lower():
        fail(f"unknown assignor: expected an assignor error, got {error}")

    print(json.dumps({"split": {k: sorted(v) for k, v in split.items()}, "left": left, "static": before,
                      "after": {k: sorted(v) for k, v in after.items()}, "records": len(seen),
                      "unknown_assignor": error}))


if __name__ == "__main__":
    main()
