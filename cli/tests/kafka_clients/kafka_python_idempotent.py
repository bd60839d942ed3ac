"""kafka-python 3.x against shardlog's Kafka listener: an idempotent producer (kafka-python
turns idempotence on by default) sends keyed records; a consumer reads them back.

Usage: kafka_python_idempotent.py BOOTSTRAP TOPIC COUNT. Prints "P key partition offset" per
produced record and "C key partition offset" per consumed one, so the caller can check the
partitioner and that nothing was lost or duplicated. Every wait is bounded.
"""
import sys

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

WAIT_MS = 30000


def main():
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=WAIT_MS)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    futures = [(f"key-{i}", producer.send(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode()))
               for i in range(count)]
    for key, future in futures:
        md = future.get(timeout=WAIT_MS / 1000)
        print(f"P {key} {md.partition} {md.offset}")
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-kp",
                             auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             enable_auto_commit=True)
    got = 0
    for msg in consumer:
        print(f"C {msg.key.decode()} {msg.partition} {msg.offset}")
        got += 1
        if got == count:
            break
    consumer.commit()
    consumer.close()


if __name__ == "__main__":
    main()
