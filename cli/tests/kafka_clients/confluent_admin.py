"""confluent-kafka's AdminClient (librdkafka) against shardlog: every admin call the issue
names, checked for values, not just for no error.

Usage: python3 confluent_admin.py BOOTSTRAP TOPIC
Prints one "OK <step>" line per step; exits 1 at the first failure, naming the step.
"""
import sys
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

BOOTSTRAP, TOPIC = sys.argv[1], sys.argv[2]
GROUP = TOPIC + "-group"
TIMEOUT = 30


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def step(name, f):
    try:
        f()
    except Exception as e:  # noqa: BLE001 - every failure is reported with its step
        print(f"FAIL {name}: {e!r}", flush=True)
        sys.exit(1)
    print(f"OK {name}", flush=True)


admin = AdminClient({"bootstrap.servers": BOOTSTRAP})


def create():
    futures = admin.create_topics([NewTopic(TOPIC, 3, 1, config={"retention.ms": "3600000"})])
    futures[TOPIC].result(TIMEOUT)


step("create_topics", create)


def produce_and_consume():
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    for i in range(30):
        producer.produce(TOPIC, key=f"k{i}", value=f"v{i}")
    check(producer.flush(TIMEOUT) == 0, "every record delivered")
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP, "auto.offset.reset": "earliest",
                         "client.id": "confluent-probe", "enable.auto.commit": False})
    consumer.subscribe([TOPIC])
    seen = 0
    deadline = time.time() + 60
    while seen < 30 and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            seen += 1
    check(seen == 30, f"consumed {seen} of 30")
    consumer.commit(asynchronous=False)
    listed = admin.list_consumer_groups().result(TIMEOUT)
    check(any(g.group_id == GROUP for g in listed.valid), [g.group_id for g in listed.valid])
    described = admin.describe_consumer_groups([GROUP])[GROUP].result(TIMEOUT)
    check(str(described.state).endswith("STABLE"), described.state)
    member = described.members[0]
    check(member.client_id == "confluent-probe" and member.member_id.startswith("confluent-probe-"), member.member_id)
    assigned = sorted(tp.partition for tp in member.assignment.topic_partitions)
    check(assigned == [0, 1, 2], assigned)
    consumer.close()


step("produce, consume, list_consumer_groups, describe_consumer_groups", produce_and_consume)


def committed():
    request = ConsumerGroupTopicPartitions(GROUP)
    result = admin.list_consumer_group_offsets([request])[GROUP].result(TIMEOUT)
    check(sum(tp.offset for tp in result.topic_partitions) == 30, result.topic_partitions)


step("list_consumer_group_offsets", committed)


def configs():
    resource = ConfigResource(ResourceType.TOPIC, TOPIC)
    entries = admin.describe_configs([resource])[resource].result(TIMEOUT)
    check(entries["retention.ms"].value == "3600000", entries["retention.ms"])
    check(entries["cleanup.policy"].value == "delete", entries["cleanup.policy"])
    entry = ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)
    altered = ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[entry])
    admin.incremental_alter_configs([altered])[altered].result(TIMEOUT)
    entries = admin.describe_configs([resource])[resource].result(TIMEOUT)
    check(entries["retention.ms"].value == "7200000", entries["retention.ms"])
    check(entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, entries["retention.ms"].source)
    broker = ConfigResource(ResourceType.BROKER, "0")
    entries = admin.describe_configs([broker])[broker].result(TIMEOUT)
    check("num.partitions" in entries, sorted(entries))


step("describe_configs (topic, broker), incremental_alter_configs", configs)


def delete_records():
    result = admin.delete_records([TopicPartition(TOPIC, 0, -1)])
    for future in result.values():
        deleted = future.result(TIMEOUT)
        check(deleted.low_watermark > 0, deleted.low_watermark)


if hasattr(admin, "delete_records"):
    step("delete_records", delete_records)


def delete_offsets_and_groups():
    futures = admin.delete_consumer_groups([GROUP])
    futures[GROUP].result(TIMEOUT)
    listed = admin.list_consumer_groups().result(TIMEOUT)
    check(not any(g.group_id == GROUP for g in listed.valid), [g.group_id for g in listed.valid])


step("delete_consumer_groups", delete_offsets_and_groups)


def delete_topic():
    admin.delete_topics([TOPIC])[TOPIC].result(TIMEOUT)


step("delete_topics", delete_topic)
print("ALL OK", flush=True)
