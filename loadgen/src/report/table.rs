//! The human-readable report printed at the end of a run.

use std::fmt::Write;

use super::targets::evaluate;
use super::RunReport;
use crate::histogram::{format_us, Percentiles};
use crate::meter::Platform;

pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    let res = &r.results;
    let c = &r.config;
    let e = &r.environment;
    let _ = writeln!(out, "\n== shardlog-loadgen: {} ({:?})", r.scenario, res.mode);
    let _ = writeln!(
        out,
        "workload: {} topic(s) × {} partitions, {} messages, {} producer(s), {} group(s) × {} consumer(s), acks {:?}, \
         durability {}, batch {}, linger {} ms, rate {}",
        c.topics,
        c.partitions,
        c.message_size,
        c.producers,
        c.groups,
        c.consumers,
        c.acks,
        c.durability,
        c.batch_bytes,
        c.linger_ms,
        c.rate
    );
    let _ = writeln!(
        out,
        "machine: {} CPUs, {}, data dir {}, memlock {}",
        e.cpus,
        e.kernel.split(" (").next().unwrap_or(""),
        e.data_dir_fs.as_deref().unwrap_or("?"),
        e.memlock
    );
    let _ = writeln!(
        out,
        "broker: {} {}; load generator: {} {}",
        e.broker,
        e.broker_placement.as_deref().unwrap_or(""),
        e.loadgen_executors,
        e.loadgen_placement
    );
    if let Some(rate) = res.rate_target_msg_per_s {
        let _ = write!(out, "target rate: {rate:.0} msg/s");
        if let Some(max) = res.rate_max_probe_msg_per_s {
            let _ = write!(out, " (probe max {max:.0} msg/s)");
        }
        out.push('\n');
    }
    if let Some(probe) = &res.probe {
        let _ = writeln!(out, "\nclosed-loop maximum (the probe, {:.1} s measured):", probe.publish.seconds);
        let _ = writeln!(
            out,
            "  publish {:.0} msg/s ({:.1} MB/s), consume {:.0} msg/s ({:.1} MB/s)",
            probe.publish.msg_per_s, probe.publish.mb_per_s, probe.consume.msg_per_s, probe.consume.mb_per_s
        );
        let p = |x: &Percentiles| {
            if x.count == 0 {
                "-".to_owned()
            } else {
                format!(
                    "p50 {}, p99 {}, p99.9 {}",
                    format_us(x.p50_us as f64),
                    format_us(x.p99_us as f64),
                    format_us(x.p999_us as f64)
                )
            }
        };
        let _ = writeln!(
            out,
            "  publish latency {}; end to end {}",
            p(&probe.publish_latency_us),
            p(&probe.end_to_end_latency_us)
        );
        if let Some(pl) = &probe.platform {
            let _ = writeln!(out, "  CPU per acked message: {}", cpu_line(pl));
        }
        let _ = writeln!(out, "\nat the target rate (open loop):");
    }
    let _ = writeln!(out, "\n{:<22} {:>12} {:>10} {:>9} {:>12}", "throughput", "msg/s", "MB/s", "seconds", "messages");
    for (name, t) in [("publish (acked)", &res.publish), ("consume", &res.consume)] {
        let _ = writeln!(
            out,
            "{name:<22} {:>12.0} {:>10.1} {:>9.2} {:>12}",
            t.msg_per_s, t.mb_per_s, t.seconds, t.messages
        );
    }
    let _ = writeln!(
        out,
        "\n{:<22} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "latency", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"
    );
    for (name, p) in [
        ("publish (from intended)", &res.publish_latency_us),
        ("send delay", &res.send_delay_us),
        ("end to end", &res.end_to_end_latency_us),
    ] {
        latency_row(&mut out, name, p);
    }
    if let Some(pl) = &res.platform {
        // The platform's own stalls in the same window: a latency above is the broker's only
        // as far as it stands clear of these.
        latency_row(&mut out, &format!("hiccup ({} ms sleep)", pl.hiccup_interval_us / 1000), &pl.hiccup_us);
        let _ = writeln!(
            out,
            "platform (same window): steal {:.1} %, iowait {:.1} % of all CPU time",
            pl.steal_percent, pl.iowait_percent
        );
        let _ = writeln!(out, "CPU per acked message: {}", cpu_line(pl));
    }
    let _ = writeln!(
        out,
        "\nbacklog: {} at window start, {} at window end; sent {}, acked {}, consumed {}; errors {}",
        res.backlog_messages_window_start,
        res.backlog_messages_end,
        res.totals.sent,
        res.totals.acked,
        res.totals.consumed,
        res.errors.total()
    );
    if let Some(b) = &r.baselines {
        let _ = writeln!(out, "\nbaselines (same run):");
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} MB/s"));
        let _ = writeln!(
            out,
            "  raw disk write {}, raw disk read {}, loopback TCP {}",
            opt(b.disk_write_mb_per_s),
            opt(b.disk_read_mb_per_s),
            opt(b.loopback_mb_per_s)
        );
        if let Some(f) = &b.fsync_latency_us {
            let _ = writeln!(
                out,
                "  4 KiB write + fdatasync: p50 {}, p99 {}, p99.9 {}",
                format_us(f.p50_us as f64),
                format_us(f.p99_us as f64),
                format_us(f.p999_us as f64)
            );
        }
        if let Some(p) = &b.loopback_rtt_us {
            let _ = writeln!(
                out,
                "  loopback 128 B round trip: p50 {}, p99 {}, p99.9 {}",
                format_us(p.p50_us as f64),
                format_us(p.p99_us as f64),
                format_us(p.p999_us as f64)
            );
        }
    }
    if !res.ratios.is_empty() {
        let _ = writeln!(out, "\nratios to baselines:");
        for (name, value) in &res.ratios {
            let _ = writeln!(out, "  {name:<28} {value:>8.3}");
        }
    }
    for (target, outcome) in evaluate(r) {
        let verdict = match outcome {
            Some((actual, true)) => format!("met ({actual:.3})"),
            Some((actual, false)) => format!("MISSED ({actual:.3})"),
            None => "not measured (baseline missing)".to_owned(),
        };
        let _ = writeln!(out, "target {}: {verdict}", target.describe());
    }
    for note in &res.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// "broker 0.61 µs (0.52 cores), load generator 0.85 µs (0.72 cores)".
fn cpu_line(pl: &Platform) -> String {
    let cpu = |per_msg: Option<f64>, cores: Option<f64>| match (per_msg, cores) {
        (Some(m), Some(c)) => format!("{m:.2} µs ({c:.2} cores)"),
        _ => "not measured".to_owned(),
    };
    format!(
        "broker {}, load generator {}",
        cpu(pl.broker_cpu_us_per_msg, pl.broker_cores),
        cpu(pl.loadgen_cpu_us_per_msg, pl.loadgen_cores)
    )
}

fn latency_row(out: &mut String, name: &str, p: &Percentiles) {
    if p.count == 0 {
        let _ = writeln!(out, "{name:<22} {:>10}", "-");
        return;
    }
    let f = |v: u64| format_us(v as f64);
    let _ = writeln!(
        out,
        "{name:<22} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        f(p.p50_us),
        f(p.p90_us),
        f(p.p99_us),
        f(p.p999_us),
        f(p.p9999_us),
        f(p.max_us),
        p.count
    );
}
