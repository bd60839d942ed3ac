//! What the platform and the processes did during the measured window, so that every latency
//! and throughput figure can be read against it (issue #14):
//!
//! - the **hiccup meter** (after jHiccup): a thread that sleeps `HICCUP_INTERVAL` again and
//!   again and records how late it wakes. A vCPU stolen by the hypervisor, a scheduler that
//!   leaves a runnable thread waiting, a page-fault storm: each shows up here as lateness no
//!   broker caused. A publish p99.9 is only the broker's when the hiccup p99.9 beside it is
//!   small.
//! - **steal and iowait** time of the whole machine, from /proc/stat, as shares of all CPU
//!   time in the window;
//! - **CPU time per message** of the load generator and of the broker: per thread from
//!   /proc/self/task/*/schedstat (nanoseconds on CPU) when the broker runs in this process
//!   (load-generator threads are the main thread and those named `loadgen…`; every other
//!   thread is the broker's), and from /proc/PID/stat (clock ticks, counting threads that
//!   ended too) for a broker process named by `--broker-pid`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::histogram::{latency_histogram, record, Percentiles};

/// How long the hiccup thread sleeps each time: short enough to catch a 1 ms stall, long
/// enough that its own CPU (about 1000 wake-ups a second) is negligible.
pub const HICCUP_INTERVAL: Duration = Duration::from_millis(1);
/// Thread-name prefix of the load generator's own threads (its executors are named
/// `loadgen…` by `workload/mod.rs`).
pub const LOADGEN_THREAD_PREFIX: &str = "loadgen";

/// The platform during the measured window, reported beside every latency.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Platform {
    /// How late a thread sleeping `hiccup_interval_us` woke (µs past the intended wake-up).
    pub hiccup_us: Percentiles,
    pub hiccup_interval_us: u64,
    /// Shares of all CPU time in the window (every CPU), in percent.
    pub steal_percent: f64,
    pub iowait_percent: f64,
    /// CPU time per acknowledged message in the window (producing and, when consumers run,
    /// consuming it), µs.
    pub loadgen_cpu_us_per_msg: Option<f64>,
    pub broker_cpu_us_per_msg: Option<f64>,
    /// Cores kept busy on average over the window.
    pub loadgen_cores: Option<f64>,
    pub broker_cores: Option<f64>,
}

/// Where the broker's CPU time is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerCpu {
    /// In this process: every thread that is not the load generator's.
    Embedded,
    /// Another process.
    Pid(u32),
    /// A remote broker whose process is not known.
    Unknown,
}

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    loadgen_cpu: Option<Duration>,
    broker_cpu: Option<Duration>,
    machine: Option<MachineTimes>,
}

/// The first line of /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct MachineTimes {
    total: u64,
    iowait: u64,
    steal: u64,
}

impl Sample {
    pub fn take(broker: BrokerCpu) -> Sample {
        let at = Instant::now();
        let (loadgen_cpu, broker_cpu) = match broker {
            BrokerCpu::Embedded => match own_threads_cpu() {
                Some((loadgen, others)) => (Some(loadgen), Some(others)),
                None => (None, None),
            },
            BrokerCpu::Pid(pid) => (process_cpu("self"), process_cpu(&pid.to_string())),
            BrokerCpu::Unknown => (process_cpu("self"), None),
        };
        Sample { at, loadgen_cpu, broker_cpu, machine: machine_times() }
    }
}

/// What changed between two samples, over `messages` acknowledged messages, with the hiccup
/// histogram of the same window.
pub fn platform(start: &Sample, end: &Sample, messages: u64, hiccups: Option<&Histogram<u64>>) -> Platform {
    let seconds = end.at.saturating_duration_since(start.at).as_secs_f64().max(1e-9);
    let per_msg = |a: Option<Duration>, b: Option<Duration>| {
        let used = b?.checked_sub(a?)?;
        (messages > 0).then(|| used.as_secs_f64() * 1e6 / messages as f64)
    };
    let cores = |a: Option<Duration>, b: Option<Duration>| Some(b?.checked_sub(a?)?.as_secs_f64() / seconds);
    let (steal_percent, iowait_percent) = match (start.machine, end.machine) {
        (Some(a), Some(b)) if b.total > a.total => {
            let total = (b.total - a.total) as f64;
            (
                b.steal.saturating_sub(a.steal) as f64 * 100.0 / total,
                b.iowait.saturating_sub(a.iowait) as f64 * 100.0 / total,
            )
        }
        _ => (0.0, 0.0),
    };
    Platform {
        hiccup_us: hiccups.map(Percentiles::of).unwrap_or_default(),
        hiccup_interval_us: HICCUP_INTERVAL.as_micros() as u64,
        steal_percent,
        iowait_percent,
        loadgen_cpu_us_per_msg: per_msg(start.loadgen_cpu, end.loadgen_cpu),
        broker_cpu_us_per_msg: per_msg(start.broker_cpu, end.broker_cpu),
        loadgen_cores: cores(start.loadgen_cpu, end.loadgen_cpu),
        broker_cores: cores(start.broker_cpu, end.broker_cpu),
    }
}

/// The hiccup thread, recording from `start` until `stop`.
pub struct HiccupMeter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<Histogram<u64>>>>,
}

impl HiccupMeter {
    /// Starts the thread; one that cannot be started leaves no histogram (the report then
    /// shows no hiccup figures rather than failing the run).
    pub fn start() -> HiccupMeter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("{LOADGEN_THREAD_PREFIX}-hiccup"))
            .spawn({
                let stop = stop.clone();
                move || measure_hiccups(&stop)
            })
            .ok();
        HiccupMeter { stop, thread }
    }

    /// Stops the thread and returns what it recorded (`None` if it could not run).
    pub fn stop(mut self) -> Option<Histogram<u64>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).flatten()
    }
}

impl Drop for HiccupMeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Sets the calling thread's timer slack to 1 ns. Linux lets a sleeping thread's timer fire up
/// to 50 µs late by default (to batch wake-ups); that slack is not a stall of the platform,
/// and a load generator that wants to send on time should not have it either.
pub fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK only changes the calling thread's timer slack; the result is
    // ignored because a failure merely leaves the default slack.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
}

fn measure_hiccups(stop: &AtomicBool) -> Option<Histogram<u64>> {
    precise_timers();
    let mut histogram = latency_histogram().ok()?;
    while !stop.load(Ordering::Relaxed) {
        let intended = Instant::now() + HICCUP_INTERVAL;
        std::thread::sleep(HICCUP_INTERVAL);
        let late = Instant::now().saturating_duration_since(intended);
        // 0 µs late is recorded as 1 µs (the histogram's floor), as every latency here.
        record(&mut histogram, late.as_micros() as u64);
    }
    Some(histogram)
}

/// (load generator, everything else) CPU time of this process's live threads.
fn own_threads_cpu() -> Option<(Duration, Duration)> {
    let pid = std::process::id().to_string();
    let (mut loadgen, mut others) = (Duration::ZERO, Duration::ZERO);
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        let Some(cpu) = thread_cpu(&dir) else { continue };
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if entry.file_name().to_str() == Some(pid.as_str()) || name.starts_with(LOADGEN_THREAD_PREFIX) {
            loadgen += cpu;
        } else {
            others += cpu;
        }
    }
    Some((loadgen, others))
}

/// A thread's time on CPU: the first field of its schedstat, in nanoseconds.
fn thread_cpu(task_dir: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(task_dir.join("schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// A process's user + system time (every thread, ended ones too), from /proc/PID/stat.
fn process_cpu(pid: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = stat_cpu_ticks(&text)?;
    // SAFETY: sysconf reads a constant of the running system and has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line; the command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing parenthesis.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn machine_times() -> Option<MachineTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`: guest time is
/// already counted in user, so the total stops at steal.
fn parse_proc_stat(text: &str) -> Option<MachineTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
    if values.len() < 8 {
        return None;
    }
    Some(MachineTimes { total: values.iter().sum(), iowait: values[4], steal: values[7] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 4 0";
        assert_eq!(stat_cpu_ticks(line), Some(290));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn proc_stat_shares() {
        let text = "cpu  100 0 50 800 20 0 0 30 0 0\ncpu0 1 2 3\n";
        let t = parse_proc_stat(text).unwrap();
        assert_eq!(t, MachineTimes { total: 1000, iowait: 20, steal: 30 });
        assert_eq!(parse_proc_stat("cpu  1 2"), None);
    }

    #[test]
    fn per_message_figures_from_two_samples() {
        let at = Instant::now();
        let machine = |total, iowait, steal| Some(MachineTimes { total, iowait, steal });
        let start = Sample {
            at,
            loadgen_cpu: Some(Duration::from_millis(100)),
            broker_cpu: Some(Duration::from_millis(50)),
            machine: machine(1000, 10, 0),
        };
        let end = Sample {
            at: at + Duration::from_secs(2),
            loadgen_cpu: Some(Duration::from_millis(1100)),
            broker_cpu: Some(Duration::from_millis(550)),
            machine: machine(1400, 30, 40),
        };
        let hiccups = latency_histogram().unwrap();
        let p = platform(&start, &end, 1_000_000, Some(&hiccups));
        assert_eq!(p.loadgen_cpu_us_per_msg, Some(1.0));
        assert_eq!(p.broker_cpu_us_per_msg, Some(0.5));
        assert_eq!(p.loadgen_cores, Some(0.5));
        assert!((p.steal_percent - 10.0).abs() < 1e-9 && (p.iowait_percent - 5.0).abs() < 1e-9);
        // No messages, or a broker whose CPU is unknown: no per-message figure.
        assert_eq!(platform(&start, &end, 0, Some(&hiccups)).broker_cpu_us_per_msg, None);
        let unknown = Sample { broker_cpu: None, ..end };
        assert_eq!(platform(&start, &unknown, 10, None).broker_cpu_us_per_msg, None);
    }

    #[test]
    fn this_process_is_measured() {
        let a = Sample::take(BrokerCpu::Embedded);
        // /proc counts CPU time in clock ticks (10 ms here), so a fixed amount of work may not
        // cross a tick: burn CPU until the count moves, for at most a few seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut x = 0u64;
        let b = loop {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            let b = Sample::take(BrokerCpu::Embedded);
            if b.broker_cpu.unwrap() > a.broker_cpu.unwrap() || std::time::Instant::now() >= deadline {
                break b;
            }
        };
        // The test's own thread is not named `loadgen…` and is not the main thread, so its
        // time shows up on the broker's side.
        assert!(b.broker_cpu.unwrap() > a.broker_cpu.unwrap());
        let meter = HiccupMeter::start();
        std::thread::sleep(Duration::from_millis(30));
        assert!(meter.stop().unwrap().len() >= 5);
    }
}
