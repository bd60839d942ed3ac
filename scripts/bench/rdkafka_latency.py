#!/usr/bin/env python3
"""Publish latency of an unchanged Kafka client (confluent-kafka = librdkafka) at a fixed rate.

Open loop, as shardlog-loadgen: message k is intended at start + k / rate, its latency counts
from that intended time to its delivery report, and the client's own lateness (intended ->
produce() call) is reported beside it as "send delay", so the script's jitter can be told from
the broker's. Prints one JSON object.

    rdkafka_latency.py BOOTSTRAP --rate 1000 --seconds 10 --acks all --durable
"""
import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

# The last stretch before an intended send is spun, not waited in poll() (which wakes late).
SPIN_S = 0.0003
TOPIC_TIMEOUT_S = 30


def percentiles(values):
    if not values:
        return {}
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return {
        "count": len(values),
        "p50_us": pick(0.50),
        "p99_us": pick(0.99),
        "p999_us": pick(0.999),
        "max_us": values[-1],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--acks", default="all")
    ap.add_argument("--durable", action="store_true", help="topic with flush.messages=1 (fsync per batch)")
    a = ap.parse_args()

    topic = f"rdk-lat-{uuid.uuid4().hex[:8]}"
    # Non-durable says so: Long.MAX ("never") is Kafka's default for both flush settings, and
    # shardlog maps it to durability none (its own default is sync, an fdatasync per ack).
    never = str(2**63 - 1)
    configs = {"flush.messages": "1"} if a.durable else {"flush.messages": never, "flush.ms": never}
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for f in admin.create_topics([NewTopic(topic, a.partitions, 1, config=configs)]).values():
        f.result(TOPIC_TIMEOUT_S)
    producer = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": a.acks,
        "linger.ms": 0,
        "enable.idempotence": False,
        "max.in.flight.requests.per.connection": 5,
    })
    # Wait until the topic takes records (a new topic's leader may not serve yet).
    deadline = time.monotonic() + TOPIC_TIMEOUT_S
    while True:
        ok = []
        producer.produce(topic, b"warm", on_delivery=lambda e, m: ok.append(e is None))
        producer.flush(TOPIC_TIMEOUT_S)
        if ok and ok[0]:
            break
        if time.monotonic() > deadline:
            sys.exit("the topic never took a record")
        time.sleep(0.1)

    value = b"x" * a.size
    latencies, send_delays = [], []
    errors = [0]
    start = time.monotonic() + 0.05
    measure_from = start + a.warmup
    end = measure_from + a.seconds
    interval = 1.0 / a.rate
    k = 0
    while True:
        intended = start + k * interval
        if intended >= end:
            break
        now = time.monotonic()
        if intended > now:
            # Wait in poll(), never sleep(): delivery reports are only handed to the script
            # inside poll(), so a sleeping script would add its sleep to their latency.
            while True:
                # One reading of the clock: a negative timeout would make poll() wait forever.
                left = intended - time.monotonic() - SPIN_S
                if left <= 0:
                    break
                producer.poll(left)
            while time.monotonic() < intended:
                producer.poll(0)
            now = time.monotonic()
        measured = intended >= measure_from

        def done(err, msg, intended=intended, measured=measured):
            if err is not None:
                errors[0] += 1
            elif measured:
                latencies.append(int((time.monotonic() - intended) * 1e6))

        producer.produce(topic, value, on_delivery=done)
        if measured:
            send_delays.append(int((now - intended) * 1e6))
        producer.poll(0)
        k += 1
    producer.flush(30)
    for f in admin.delete_topics([topic]).values():
        try:
            f.result(TOPIC_TIMEOUT_S)
        except Exception:
            pass
    print(json.dumps({
        "bootstrap": a.bootstrap,
        "rate": a.rate,
        "acks": a.acks,
        "durable": a.durable,
        "size": a.size,
        "errors": errors[0],
        "publish": percentiles(latencies),
        "send_delay": percentiles(send_delays),
    }))


if __name__ == "__main__":
    main()
