#!/usr/bin/env python3
"""Summarises a scripts/bench/vs-kafka.sh directory as markdown: per scenario, each broker's
figures (mean over repetitions, with the range), shardlog ÷ Kafka, the same-run baselines,
and the issue #14 latency targets judged against them."""
import glob
import json
import os
import re
import sys
from collections import defaultdict


def load_runs(d):
    runs = defaultdict(lambda: defaultdict(list))
    for path in sorted(glob.glob(os.path.join(d, "*-r*.json"))):
        m = re.match(r"(.+)-(shardlog|kafka)-r(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            runs[m.group(1)][m.group(2)].append(json.load(f))
    return runs


def figures(r):
    res = r["results"]
    pl = res.get("platform") or {}
    b = r.get("baselines") or {}
    pub = res["publish_latency_us"]
    return {
        "publish MB/s": res["publish"]["mb_per_s"],
        "consume MB/s": res["consume"]["mb_per_s"],
        "p50 ms": pub["p50_us"] / 1000,
        "p99 ms": pub["p99_us"] / 1000,
        "p99.9 ms": pub["p999_us"] / 1000,
        "broker CPU µs/msg": pl.get("broker_cpu_us_per_msg"),
        "loadgen CPU µs/msg": pl.get("loadgen_cpu_us_per_msg"),
        "hiccup p99.9 ms": (pl.get("hiccup_us") or {}).get("p999_us", 0) / 1000,
        "send delay p99.9 ms": res["send_delay_us"]["p999_us"] / 1000,
        "fsync p99.9 ms": ((b.get("fsync_latency_us") or {}).get("p999_us") or 0) / 1000,
        "rtt p99.9 ms": ((b.get("loopback_rtt_us") or {}).get("p999_us") or 0) / 1000,
        "errors": sum(res["errors"][k] for k in ("send", "ack", "consume")),
    }


def mean_range(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return sum(values) / len(values), min(values), max(values)


def fmt(v, lo=None, hi=None):
    if v is None:
        return "–"
    digits = 2 if abs(v) < 10 else 1 if abs(v) < 100 else 0
    text = f"{v:.{digits}f}"
    if lo is not None and hi is not None and hi > lo:
        text += f" ({lo:.{digits}f}–{hi:.{digits}f})"
    return text


def target(scenario, f):
    """The issue #14 latency target for this scenario, judged on one broker's mean figures."""
    p999, p50 = f["p99.9 ms"], f["p50 ms"]
    rtt, fsync = f["rtt p99.9 ms"], f["fsync p99.9 ms"]
    if scenario.startswith("none-") and scenario != "none-max" and rtt:
        bound = 3 * rtt
        return f"p99.9 ≤ 3×RTT p99.9 ({bound:.2f} ms): {'met' if p999 <= bound else 'missed'} ({p999 / bound:.1f}×)"
    if scenario in ("durable-1k", "durable-10k") and fsync and rtt:
        bound = 1.5 * fsync + 3 * rtt
        return (f"p99.9 ≤ 1.5×fsync p99.9 + 3×RTT p99.9 ({bound:.2f} ms): "
                f"{'met' if p999 <= bound else 'missed'} ({p999 / bound:.1f}×)")
    if scenario.endswith("50pct") and p50:
        return f"p99.9 ≤ 10×p50: {'met' if p999 <= 10 * p50 else 'missed'} ({p999 / p50:.1f}×p50)"
    return ""


def main():
    d = sys.argv[1]
    runs = load_runs(d)
    cols = ["publish MB/s", "consume MB/s", "p50 ms", "p99 ms", "p99.9 ms", "broker CPU µs/msg",
            "loadgen CPU µs/msg", "hiccup p99.9 ms", "send delay p99.9 ms"]
    print(f"## shardlog vs Apache Kafka 4.1 — {os.path.basename(os.path.abspath(d))}\n")
    print("Mean over repetitions (range in brackets). Ratio = shardlog ÷ Kafka (throughput: higher is "
          "better; latency and CPU: lower is better).\n")
    print("| scenario | broker | runs | " + " | ".join(cols) + " | errors |")
    print("|" + "---|" * (len(cols) + 4))
    targets = []
    for scenario in sorted(runs):
        means = {}
        for broker in ("shardlog", "kafka"):
            rs = [figures(r) for r in runs[scenario].get(broker, [])]
            if not rs:
                continue
            cells, means[broker] = [], {}
            for c in cols + ["fsync p99.9 ms", "rtt p99.9 ms"]:
                m, lo, hi = mean_range([x[c] for x in rs])
                means[broker][c] = m
                if c in cols:
                    cells.append(fmt(m, lo, hi))
            errors = sum(x["errors"] for x in rs)
            print(f"| {scenario} | {broker} | {len(rs)} | " + " | ".join(cells) + f" | {errors} |")
            t = target(scenario, means[broker])
            if t:
                targets.append(f"- {scenario}, {broker}: {t}")
        if "shardlog" in means and "kafka" in means:
            ratio = []
            for c in cols:
                a, b = means["shardlog"].get(c), means["kafka"].get(c)
                ratio.append(f"**{a / b:.2f}×**" if a and b else "–")
            print(f"| {scenario} | ÷ Kafka | | " + " | ".join(ratio) + " | |")
    if targets:
        print("\nLatency targets (issue #14), each against the same run's baselines:\n")
        print("\n".join(targets))
    perf = sorted(glob.glob(os.path.join(d, "perf-*.txt")))
    if perf:
        print("\nkafka-producer-perf-test (1 KiB, 100 partitions, linger.ms=1, batch.size=128 KiB):\n")
        print("| run | records/s | MB/s | avg ms | p50 ms | p99 ms | p99.9 ms | broker CPU µs/msg |")
        print("|---|---|---|---|---|---|---|---|")
        for path in perf:
            text = open(path).read()
            final = re.findall(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                               r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th", text)
            cpu = re.findall(r"broker_cpu_us_per_msg ([\d.]+)", text)
            name = os.path.basename(path)[5:-4]
            if final:
                f = final[-1]
                cpu_text = f"{float(cpu[-1]):.2f}" if cpu else "–"
                print(f"| {name} | {float(f[1]):.0f} | {float(f[2]):.1f} | {f[3]} | {f[5]} | {f[7]} | {f[8]} | {cpu_text} |")
            else:
                print(f"| {name} | failed | | | | | | |")
    rdk = sorted(glob.glob(os.path.join(d, "rdkafka-*.json")))
    if rdk:
        print("\nUnchanged librdkafka (confluent-kafka, linger.ms=0, 1 KiB, 1 partition), open loop:\n")
        print("| run | p50 ms | p99 ms | p99.9 ms | client send delay p99.9 ms | errors |")
        print("|---|---|---|---|---|---|")
        for path in rdk:
            try:
                r = json.load(open(path))
            except (OSError, ValueError):
                print(f"| {os.path.basename(path)[8:-5]} | failed | | | | |")
                continue
            p, s = r.get("publish", {}), r.get("send_delay", {})
            ms = lambda v: f"{v / 1000:.2f}" if v is not None else "–"
            print(f"| {os.path.basename(path)[8:-5]} | {ms(p.get('p50_us'))} | {ms(p.get('p99_us'))} | "
                  f"{ms(p.get('p999_us'))} | {ms(s.get('p999_us'))} | {r.get('errors')} |")


if __name__ == "__main__":
    main()
