"""confluent-kafka (librdkafka) with its default producer settings — not idempotent, many
requests in flight per connection — sends numbered records to one partition in the shape of
librdkafka's own test 0041 (small records, then large ones), then reads the partition back.

Usage: confluent_order.py BOOTSTRAP TOPIC SMALL LARGE. Creates TOPIC with one partition and
1 MiB segments (so the large records roll segments), produces SMALL records of 10 KB then LARGE
records of 500 KB keyed by their sequence number, and prints "ORDER ok N" if the partition
holds exactly 0..N-1 in order, or "ORDER bad ..." with the first inversions. Every wait is
bounded.
"""
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

WAIT_S = 60


def main():
    bootstrap, topic, small, large = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    created = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            config={"segment.bytes": str(1 << 20)})])
    created[topic].result(timeout=WAIT_S)

    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap})
    count = small + large
    for seq in range(count):
        size = 10_000 if seq < small else 500_000
        while True:
            try:
                producer.produce(topic, key=seq.to_bytes(8, "big"), value=b"v" * size, partition=0,
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: let deliveries drain
        producer.poll(0)
    left = producer.flush(WAIT_S)
    if left or errors:
        print(f"PRODUCE failed: {left} undelivered, errors {errors[:5]}")
        return

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                         "enable.auto.commit": False, "fetch.max.bytes": 8 << 20})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seqs = []
    idle_polls = 0
    while len(seqs) < count and idle_polls < 20:
        msg = consumer.poll(1.0)
        if msg is None:
            idle_polls += 1
            continue
        if msg.error():
            print(f"CONSUME error {msg.error()}")
            return
        idle_polls = 0
        seqs.append(int.from_bytes(msg.key(), "big"))
    consumer.close()
    bad = [f"offset {i}: {seqs[i]} after {seqs[i - 1]}" for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1]
    if bad or len(seqs) != count or (seqs and seqs[0] != 0):
        print(f"ORDER bad {len(seqs)} of {count} read; {'; '.join(bad[:5])}")
    else:
        print(f"ORDER ok {count}")


if __name__ == "__main__":
    main()
