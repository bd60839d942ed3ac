//! The live line, printed to stderr every second while a workload runs: rates over the last
//! second, the publish p99 over the last second, the backlog, errors, and a progress bar when
//! the run has a fixed length.

use std::io::Write;
use std::time::Duration;

use crate::histogram::format_us;
use crate::workload::stats::Snapshot;

const BAR_WIDTH: usize = 20;

pub struct LiveLine {
    label: String,
    total: Option<Duration>,
    enabled: bool,
    last: Snapshot,
    last_elapsed: Duration,
}

impl LiveLine {
    pub fn new(label: &str, total: Option<Duration>, enabled: bool) -> LiveLine {
        LiveLine { label: label.to_owned(), total, enabled, last: Snapshot::default(), last_elapsed: Duration::ZERO }
    }

    pub fn print(&mut self, elapsed: Duration, now: &Snapshot, p99_us: Option<u64>, groups: usize) {
        let seconds = (elapsed - self.last_elapsed.min(elapsed)).as_secs_f64().max(1e-3);
        let line = format_line(&self.label, elapsed, self.total, &self.last, now, seconds, p99_us, groups);
        self.last = *now;
        self.last_elapsed = elapsed;
        if self.enabled {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }

    pub fn finish(&self) {}
}

#[allow(clippy::too_many_arguments)] // one line, every field of it
pub fn format_line(
    label: &str,
    elapsed: Duration,
    total: Option<Duration>,
    before: &Snapshot,
    now: &Snapshot,
    seconds: f64,
    p99_us: Option<u64>,
    groups: usize,
) -> String {
    let progress = match total {
        Some(total) => {
            let share = (elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9)).min(1.0);
            let filled = (share * BAR_WIDTH as f64).round() as usize;
            format!(
                "[{}{}] {:>3.0}/{:.0}s",
                "#".repeat(filled),
                ".".repeat(BAR_WIDTH - filled),
                elapsed.as_secs_f64(),
                total.as_secs_f64()
            )
        }
        None => format!("{:>4.0}s", elapsed.as_secs_f64()),
    };
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / seconds;
    let p99 = p99_us.map_or("-".to_owned(), |v| format_us(v as f64));
    let backlog = (now.acked * groups as u64).saturating_sub(now.consumed);
    format!(
        "{label} {progress} | pub {:>9.0} msg/s {:>7.1} MB/s p99 {p99} | cons {:>9.0} msg/s | backlog {backlog} | errors {}",
        rate(before.acked, now.acked),
        rate(before.acked_bytes, now.acked_bytes) / 1e6,
        rate(before.consumed, now.consumed),
        now.errors,
    )
}
