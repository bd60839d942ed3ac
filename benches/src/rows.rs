//! Turns measurements into report rows: each engine figure beside the mean of the raw
//! measurements that bracket it, the ratio, the target, and notes that say what the executor
//! and the disk were doing (so a missed target comes with a first clue to its cause).

use std::path::Path;

use engine::Durability;
use hdrhistogram::Histogram;

use crate::baseline::{LatencyUs, Throughput};
use crate::report::{format_number, Report, Row, Target};
use crate::{env, AppendCase, Bracketed, Plan, ShardResults, SingleResults, MIB};

/// A bracket whose two raw measurements differ by more than this (relative to their mean) is
/// flagged: the disk changed speed during the case, so its ratio is uncertain.
const BRACKET_SPREAD_WARN: f64 = 0.20;

pub fn environment(report: &mut Report, plan: &Plan, dir: &Path, fs_type: &env::FsType) {
    report.env("mode", if plan.quick { "quick" } else { "full" });
    report.env("cpus", env::cpu_count().to_string());
    report.env("kernel", env::kernel());
    report.env("data dir", dir.display().to_string());
    report.env("filesystem", fs_type.describe());
    report.env("memlock limit", memlock_note());
    report.env(
        "engine limits",
        format!(
            "write chunk {} KiB x {} in flight, segment {} MiB, preallocate step {} MiB, unwritten max {} MiB, \
             shard cache {} MiB",
            engine::limits::WRITE_CHUNK_BYTES >> 10,
            engine::limits::WRITES_IN_FLIGHT_MAX,
            engine::limits::SEGMENT_SIZE_BYTES_DEFAULT / MIB,
            engine::limits::PREALLOCATE_STEP_BYTES / MIB,
            engine::limits::UNWRITTEN_BYTES_MAX / MIB,
            engine::limits::SHARD_CACHE_BYTES_DEFAULT / MIB,
        ),
    );
    report.env(
        "plan",
        format!(
            "raw {} MiB, append {} MiB/case x {} producers, 2 shards x {} MiB, latency {} s/case, cold read {} MiB",
            plan.raw_bytes / MIB,
            plan.append_bytes / MIB,
            plan.producers,
            plan.shard_bytes / MIB,
            plan.latency_duration.as_secs(),
            plan.cold_read_bytes / MIB
        ),
    );
    report.env(
        "method",
        "each engine case is bracketed by the same raw measurement right before and after it; \
         ratio = engine / mean(before, after)",
    );
}

/// glommio registers a 10 MiB buffer slab and silently falls back to plain allocations when
/// the memlock limit is lower; say which case this run is in.
fn memlock_note() -> String {
    let limit = env::memlock_limit();
    let slab_bytes = 10 * MIB;
    match env::memlock_soft_bytes() {
        Some(bytes) if bytes < slab_bytes => format!(
            "{limit} (could not raise; below glommio's 10 MiB slab, so its DMA buffers are plain heap \
             allocations, for the baselines and the engine alike)"
        ),
        _ => limit,
    }
}

pub fn add_sections(report: &mut Report, single: &SingleResults, shards: &Bracketed<ShardResults, Throughput>) {
    report.section("baselines (raw glommio DmaFile, same data dir, measured first)", baseline_rows(single, shards));
    let rows = append_rows(report, single);
    report.section("A: append throughput, one log, 1 KiB records", rows);
    let rows = vec![shard_row(report, shards)];
    report.section("B: two shards, one log each, 1 MiB batches, Sync", rows);
    let rows = latency_rows(report, single);
    report.section("C: Sync append latency, 16 KiB batches, closed loop", rows);
    let rows = vec![cold_row(report, single)];
    report.section("D: cold read (after close + reopen, from disk)", rows);
    report.section("E: tail reads (tail cache, no disk I/O expected)", tail_rows(single));
}

fn baseline_rows(single: &SingleResults, shards: &Bracketed<ShardResults, Throughput>) -> Vec<Row> {
    let w = &single.raw_write;
    let s = LatencyUs::from_histogram(&single.raw_fsync);
    let r = &single.raw_read;
    vec![
        Row::new("1. raw write, 1 MiB x 8 in flight + fdatasync", w.gb_per_s(), "GB/s").note(throughput_note(w)),
        Row::new("2. raw 4 KiB write + fdatasync, p50", s.p50, "us").note(format!("{} syncs", s.count)),
        Row::new("2. raw 4 KiB write + fdatasync, p99", s.p99, "us"),
        Row::new("2. raw 4 KiB write + fdatasync, p99.9", s.p999, "us").note(format!("max {} us", s.max)),
        Row::new("3. raw read, 1 MiB x 8 in flight", r.gb_per_s(), "GB/s").note(throughput_note(r)),
        raw_write_spread_row(single, shards),
    ]
}

/// How much the raw write moved over the whole run: the reason for bracketing.
fn raw_write_spread_row(single: &SingleResults, shards: &Bracketed<ShardResults, Throughput>) -> Row {
    let mut runs: Vec<f64> = vec![single.raw_write.gb_per_s()];
    if let Some(first) = single.appends.first() {
        runs.push(first.raw_before.gb_per_s());
    }
    runs.extend(single.appends.iter().map(|a| a.raw_after.gb_per_s()));
    runs.extend([shards.raw_before.gb_per_s(), shards.raw_after.gb_per_s()]);
    runs.sort_by(f64::total_cmp);
    let median = runs[runs.len() / 2];
    let (min, max) = (runs[0], runs[runs.len() - 1]);
    Row::new(format!("1'. raw write, median of all {} runs", runs.len()), median, "GB/s").note(format!(
        "min {} GB/s, max {} GB/s: the disk moved {:.0}% during this run",
        format_number(min),
        format_number(max),
        (max - min) / median * 100.0
    ))
}

/// "256 MiB in 153 ms, executor CPU 35%, disk busy 97%, queue 7.1, writes 512 KiB": whether
/// a case waited on the disk, kept it busy, or was held up on its own thread.
fn throughput_note(t: &Throughput) -> String {
    let mut note = format!(
        "{} MiB in {:.0} ms, executor CPU {:.0}%",
        t.bytes_total / MIB,
        t.elapsed.as_secs_f64() * 1e3,
        t.cpu_share() * 100.0
    );
    if let Some(disk) = &t.disk {
        note.push_str(", ");
        note.push_str(&disk.describe());
    }
    note
}

/// The bracket's mean, and a note giving both ends (flagged when they disagree).
fn bracket(report: &mut Report, case: &str, before: f64, after: f64, unit: &str) -> (f64, String) {
    let mut note = format!("raw before/after {}/{} {unit}", format_number(before), format_number(after));
    note.push_str(&flag_spread(report, case, before, after));
    ((before + after) / 2.0, note)
}

/// Warns when the two ends of a bracket differ by more than `BRACKET_SPREAD_WARN`; returns a
/// note suffix ("" when they agree).
fn flag_spread(report: &mut Report, case: &str, before: f64, after: f64) -> String {
    let mean = (before + after) / 2.0;
    let spread = if mean > 0.0 { (before - after).abs() / mean } else { 0.0 };
    if spread <= BRACKET_SPREAD_WARN {
        return String::new();
    }
    report.warnings.push(format!(
        "{case}: the raw baseline moved {:.0}% across this case; its ratio is uncertain by about that much",
        spread * 100.0
    ));
    format!(" (NOISY: moved {:.0}%)", spread * 100.0)
}

fn append_rows(report: &mut Report, single: &SingleResults) -> Vec<Row> {
    let mut rows = Vec::new();
    for bracketed in &single.appends {
        let AppendCase { batch_bytes, durability, outcome } = &bracketed.case;
        let name = format!("{} KiB batches, {durability:?}", batch_bytes >> 10);
        let before = bracketed.raw_before.gb_per_s();
        let (baseline, bracket_note) = bracket(report, &name, before, bracketed.raw_after.gb_per_s(), "GB/s");
        let (target, how) = match durability {
            Durability::Sync => (0.9, "every append acked after its fdatasync"),
            _ => (0.95, "clock stops when a final Sync append returns"),
        };
        let p = &outcome.produced;
        let per_sync = p.appends_count as f64 / outcome.stats.syncs_count.max(1) as f64;
        rows.push(
            Row::new(name, p.measured.gb_per_s(), "GB/s")
                .against("raw write", baseline)
                .target(Target::RatioAtLeast(target))
                .note(format!(
                    "{bracket_note}; {}; {how}; {} appends, {} writes, {} fdatasyncs ({} appends/sync), {} segments; \
                     close {:.0} ms",
                    throughput_note(&p.measured),
                    p.appends_count,
                    outcome.stats.writes_count,
                    outcome.stats.syncs_count,
                    format_number(per_sync),
                    outcome.stats.segments,
                    outcome.close_elapsed.as_secs_f64() * 1e3
                )),
        );
    }
    rows
}

fn shard_row(report: &mut Report, shards: &Bracketed<ShardResults, Throughput>) -> Row {
    let s = &shards.case;
    let name = "aggregate of 2 shards";
    let (baseline, bracket_note) =
        bracket(report, name, shards.raw_before.gb_per_s(), shards.raw_after.gb_per_s(), "GB/s");
    Row::new(name, s.aggregate.gb_per_s(), "GB/s")
        .against("raw write, 1 executor", baseline)
        .target(Target::RatioAtLeast(0.9))
        .note(format!(
            "{bracket_note}; {} (CPU summed over both executors); {} appends, {} fdatasyncs",
            throughput_note(&s.aggregate),
            s.appends_count,
            s.syncs_count
        ))
}

fn latency_rows(report: &mut Report, single: &SingleResults) -> Vec<Row> {
    let bracketed = &single.latencies;
    let mut raw_histogram: Histogram<u64> = bracketed.raw_before.clone();
    // Both histograms have the same bounds, so adding cannot fail; if it did, the "before"
    // run alone still is a same-run baseline.
    let _ = raw_histogram.add(&bracketed.raw_after);
    let raw = LatencyUs::from_histogram(&raw_histogram);
    let (before, after) =
        (LatencyUs::from_histogram(&bracketed.raw_before), LatencyUs::from_histogram(&bracketed.raw_after));
    let mut bracket_note = format!(
        "raw fsync before/after: p50 {}/{} us, p99 {}/{} us, p99.9 {}/{} us ({} syncs merged)",
        before.p50, after.p50, before.p99, after.p99, before.p999, after.p999, raw.count
    );
    bracket_note.push_str(&flag_spread(report, "C (raw fsync p99.9)", before.p999, after.p999));
    let mut rows = Vec::new();
    for (producers, outcome) in &bracketed.case {
        let l = &outcome.latency;
        let per_sync = outcome.appends_count as f64 / outcome.syncs_count.max(1) as f64;
        let rate = outcome.appends_count as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
        let name = format!("{producers} producer(s)");
        rows.push(Row::new(format!("{name}, p50"), l.p50, "us").against("raw fsync p50", raw.p50));
        rows.push(Row::new(format!("{name}, p99"), l.p99, "us").against("raw fsync p99", raw.p99));
        rows.push(
            Row::new(format!("{name}, p99.9"), l.p999, "us")
                .against("raw fsync p99.9", raw.p999)
                .target(Target::RatioAtMost(1.5))
                .note(format!(
                    "{} appends ({} /s, {} MB/s), {} fdatasyncs ({} appends/sync), max {} us",
                    outcome.appends_count,
                    format_number(rate),
                    format_number(rate * (16 << 10) as f64 / 1e6),
                    outcome.syncs_count,
                    format_number(per_sync),
                    l.max
                )),
        );
    }
    if let Some(first) = rows.first_mut() {
        first.note = bracket_note;
    }
    rows
}

fn cold_row(report: &mut Report, single: &SingleResults) -> Row {
    let c = &single.cold.case;
    let name = "log.read 1 MiB, 8 readers";
    let (baseline, bracket_note) =
        bracket(report, name, single.cold.raw_before.gb_per_s(), single.cold.raw_after.gb_per_s(), "GB/s");
    Row::new(name, c.read.gb_per_s(), "GB/s").against("raw read", baseline).target(Target::RatioAtLeast(0.8)).note(
        format!(
            "{bracket_note}; {}; {} reads; reopen {:.1} ms",
            throughput_note(&c.read),
            c.reads_count,
            c.reopen_elapsed.as_secs_f64() * 1e3
        ),
    )
}

fn tail_rows(single: &SingleResults) -> Vec<Row> {
    let t = &single.tail;
    let a = &single.tail_after_append;
    let reads_per_s = a.reads_count as f64 / a.read_elapsed.as_secs_f64().max(1e-9);
    let tail_reads_per_s = t.reads_count as f64 / t.read.elapsed.as_secs_f64().max(1e-9);
    vec![
        Row::new("re-read 8 MiB resident, 1 MiB fetches", t.read.gb_per_s(), "GB/s").note(format!(
            "{} MiB, {} reads ({} reads/s), {} served from disk; zero-copy: a read hands out the producer's \
             buffers, so this measures bookkeeping, not memory bandwidth",
            t.read.bytes_total / MIB,
            t.reads_count,
            format_number(tail_reads_per_s),
            t.disk_reads_count
        )),
        Row::new("append 16 KiB (None), then read it back", reads_per_s, "reads/s").note(format!(
            "read only: p50 {} ns, p99 {} ns; {} of {} reads served from disk",
            a.latency_ns.value_at_quantile(0.5),
            a.latency_ns.value_at_quantile(0.99),
            a.disk_reads_count,
            a.reads_count
        )),
    ]
}
