"""aiokafka against shardlog: produce, consume in a group, and its admin calls.

Usage: python3 aiokafka_admin.py BOOTSTRAP TOPIC
Prints one "OK <step>" line per step; exits 1 at the first failure, naming the step.
"""
import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

BOOTSTRAP, TOPIC = sys.argv[1], sys.argv[2]
GROUP = TOPIC + "-group"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def step(name, coro):
    try:
        result = await coro
    except Exception as e:  # noqa: BLE001 - every failure is reported with its step
        print(f"FAIL {name}: {e!r}", flush=True)
        sys.exit(1)
    print(f"OK {name}", flush=True)
    return result


async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="aiokafka-probe")
    await admin.start()

    async def create():
        await admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1,
                                            topic_configs={"retention.ms": "3600000"})])
        check(TOPIC in await admin.list_topics(), "topic listed")

    await step("create_topics", create())

    async def describe_cluster():
        cluster = await admin.describe_cluster()
        check(cluster["brokers"], cluster)

    await step("describe_cluster", describe_cluster())

    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()

    async def produce():
        for i in range(30):
            await producer.send_and_wait(TOPIC, f"v{i}".encode(), key=f"k{i}".encode())

    await step("produce", produce())
    await producer.stop()

    async def consume():
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=BOOTSTRAP, group_id=GROUP, client_id="aiokafka-consumer",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        seen = 0
        try:
            while seen < 30:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 60)
                seen += sum(len(records) for records in batch.values())
            await consumer.commit()
            groups = await admin.list_consumer_groups()
            check(any(g[0] == GROUP for g in groups), groups)
            described = (await admin.describe_consumer_groups([GROUP]))[0].to_object()["groups"][0]
            check(described["state"] == "Stable", described)
            member = described["members"][0]
            check(member["client_id"] == "aiokafka-consumer", member)
            check(member["member_id"].startswith("aiokafka-consumer-"), member)
        finally:
            await consumer.stop()

    await step("consume, list_consumer_groups, describe_consumer_groups", consume())

    async def offsets():
        committed = await admin.list_consumer_group_offsets(GROUP)
        check(sum(meta.offset for meta in committed.values()) == 30, committed)

    await step("list_consumer_group_offsets", offsets())

    async def configs():
        def entries(response):
            resource = response[0].to_object()["resources"][0]
            check(resource["error_code"] == 0, resource)
            return {c["config_names"]: c["config_value"] for c in resource["config_entries"]}

        topic = ConfigResource(ConfigResourceType.TOPIC, TOPIC)
        check(entries(await admin.describe_configs([topic])).get("retention.ms") == "3600000", "retention.ms set")
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC, configs={"retention.ms": "7200000"})])
        check(entries(await admin.describe_configs([topic])).get("retention.ms") == "7200000", "retention.ms altered")
        broker = entries(await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")]))
        check(broker.get("num.partitions"), broker)

    await step("describe_configs, alter_configs", configs())

    async def delete_records():
        await admin.delete_records({TopicPartition(TOPIC, 0): RecordsToDelete(before_offset=-1)})

    await step("delete_records", delete_records())

    # aiokafka 0.14 has no delete_consumer_groups (confluent-kafka's and kafkajs' scripts cover it).
    async def delete_topic():
        await admin.delete_topics([TOPIC])

    await step("delete_topics", delete_topic())
    await admin.close()
    print("ALL OK", flush=True)


asyncio.run(main())
