//! Raw-disk baselines: what glommio alone gets from this disk, in this run, in the data
//! directory the engine uses. Every engine figure is divided by one of these, because on a
//! shared VM the disk's speed moves by tens of percent between runs (FACTS.md: 1.5–2.4 GB/s).
//!
//! The I/O shapes copy the engine's: 1 MiB aligned O_DIRECT writes, 8 in flight, into a
//! preallocated file (the engine fallocates its segments), one fdatasync at the end.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use hdrhistogram::Histogram;

use super::env::{BlockStat, DiskActivity};
use super::BaselineResult;

/// One raw write or read: the engine's chunk size (`limits::WRITE_CHUNK_BYTES`).
pub const IO_BYTES: usize = engine::limits::WRITE_CHUNK_BYTES;
/// I/Os in flight: the engine's `limits::WRITES_IN_FLIGHT_MAX`.
pub const IO_IN_FLIGHT: usize = engine::limits::WRITES_IN_FLIGHT_MAX;
/// The small write before each fdatasync in the latency baseline (fio's `--bs=4k`).
const SYNC_WRITE_BYTES: usize = 4096;
/// Unrecorded syncs first: the first writes to a new file pay for its creation and first
/// extent conversions, which are not what the engine's steady state sees.
const SYNC_WARMUP_COUNT: u64 = 10;

pub fn gio<T>(e: glommio::GlommioError<T>) -> std::io::Error {
    std::io::Error::from(e)
}

/// CPU time this thread has used (user + system). Sampled around a case, it tells whether
/// the executor was busy (CPU-bound) or waiting for the disk.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a valid timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Starts the clocks of one measurement: wall time, this executor's CPU time, and the data
/// disk's counters.
pub struct Meter {
    pub start: Instant,
    cpu_start: Duration,
    disk_start: Option<BlockStat>,
}

impl Meter {
    pub fn start() -> Meter {
        let disk_start = super::env::data_disk().and_then(|d| d.sample());
        Meter { start: Instant::now(), cpu_start: thread_cpu_time(), disk_start }
    }

    pub fn stop(&self, bytes_total: u64) -> Throughput {
        let elapsed = self.start.elapsed();
        let cpu = thread_cpu_time().saturating_sub(self.cpu_start);
        let disk_end = super::env::data_disk().and_then(|d| d.sample());
        let disk = match (&self.disk_start, &disk_end) {
            (Some(before), Some(after)) => Some(DiskActivity::between(before, after, elapsed)),
            _ => None,
        };
        Throughput { bytes_total, elapsed, cpu, disk }
    }
}

/// Bytes moved in a measured time, and what the executor and the disk did meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub bytes_total: u64,
    pub elapsed: Duration,
    /// CPU time of the executor thread over `elapsed`.
    pub cpu: Duration,
    pub disk: Option<DiskActivity>,
}

impl Throughput {
    /// Share of `elapsed` the executor thread spent on a CPU (1.0 = CPU-bound).
    pub fn cpu_share(&self) -> f64 {
        self.cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Decimal GB/s, as fio and disk vendors report it.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes_total as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct LatencyUs {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: u64,
}

impl LatencyUs {
    pub fn from_histogram(h: &Histogram<u64>) -> LatencyUs {
        LatencyUs {
            p50: h.value_at_quantile(0.50) as f64,
            p99: h.value_at_quantile(0.99) as f64,
            p999: h.value_at_quantile(0.999) as f64,
            max: h.max() as f64,
            count: h.len(),
        }
    }
}

/// Microsecond histogram from 1 µs to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> BaselineResult<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

/// glommio 0.9 decides whether io_uring IOPOLL works from the first DmaFile it opens on a
/// device (per executor); if that file is shorter than 4 KiB it decides wrongly and every
/// later read fails with EOPNOTSUPP. So each executor opens a 4 KiB file first.
pub async fn prime_direct_io(dir: &Path) -> BaselineResult<()> {
    let path = dir.join(format!("prime-direct-io-{}.dat", glommio::executor().id()));
    std::fs::write(&path, vec![0u8; 4096])?;
    let file = DmaFile::open(&path).await.map_err(gio)?;
    file.close().await.map_err(gio)?;
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Baseline 1: sequential O_DIRECT writes of `bytes_total` into a preallocated file named
/// `name`, then one fdatasync. Returns the file for the read baseline.
pub async fn raw_write(dir: &Path, name: &str, bytes_total: u64) -> BaselineResult<(Throughput, PathBuf)> {
    let path = dir.join(name);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).dma_open(&path).await;
    let file = Rc::new(file.map_err(gio)?);
    file.pre_allocate(bytes_total, false).await.map_err(gio)?;
    // Buffers are filled before the clock starts: the engine's producers also arrive with
    // their bytes ready.
    let buffers: Vec<Rc<DmaBuffer>> = (0..IO_IN_FLIGHT).map(|i| Rc::new(filled_buffer(&file, i as u64))).collect();
    let next_position = Rc::new(Cell::new(0u64));
    let meter = Meter::start();
    let workers: Vec<_> = buffers
        .into_iter()
        .map(|buf| glommio::spawn_local(write_worker(file.clone(), buf, next_position.clone(), bytes_total)))
        .collect();
    for worker in workers {
        worker.await?;
    }
    file.fdatasync().await.map_err(gio)?;
    let throughput = meter.stop(bytes_total);
    close_rc(file).await?;
    Ok((throughput, path))
}

/// One of `IO_IN_FLIGHT` writers: takes the next 1 MiB slot until the file is full.
async fn write_worker(
    file: Rc<DmaFile>,
    buf: Rc<DmaBuffer>,
    next_position: Rc<Cell<u64>>,
    bytes_total: u64,
) -> BaselineResult<()> {
    loop {
        let position = next_position.get();
        if position >= bytes_total {
            return Ok(());
        }
        next_position.set(position + IO_BYTES as u64);
        let written_bytes = file.write_rc_at(buf.clone(), position).await.map_err(gio)?;
        if written_bytes != IO_BYTES {
            return Err(format!("short raw write: {written_bytes} of {IO_BYTES} bytes at {position}").into());
        }
    }
}

/// Baseline 3: sequential O_DIRECT reads of the file written by `raw_write`, `IO_IN_FLIGHT`
/// reads in flight.
pub async fn raw_read(path: &Path) -> BaselineResult<Throughput> {
    let file = Rc::new(DmaFile::open(path).await.map_err(gio)?);
    let bytes_total = file.file_size().await.map_err(gio)?;
    let next_position = Rc::new(Cell::new(0u64));
    let meter = Meter::start();
    let workers: Vec<_> = (0..IO_IN_FLIGHT)
        .map(|_| glommio::spawn_local(read_worker(file.clone(), next_position.clone(), bytes_total)))
        .collect();
    let mut bytes_read = 0u64;
    for worker in workers {
        bytes_read += worker.await?;
    }
    let throughput = meter.stop(bytes_total);
    close_rc(file).await?;
    if bytes_read != bytes_total {
        return Err(format!("raw read got {bytes_read} of {bytes_total} bytes").into());
    }
    Ok(throughput)
}

async fn read_worker(file: Rc<DmaFile>, next_position: Rc<Cell<u64>>, bytes_total: u64) -> BaselineResult<u64> {
    let mut bytes_read = 0u64;
    loop {
        let position = next_position.get();
        if position >= bytes_total {
            return Ok(bytes_read);
        }
        next_position.set(position + IO_BYTES as u64);
        let want_bytes = (bytes_total - position).min(IO_BYTES as u64) as usize;
        let got = file.read_at_aligned(position, want_bytes).await.map_err(gio)?;
        if got.len() != want_bytes {
            return Err(format!("short raw read: {} of {want_bytes} bytes at {position}", got.len()).into());
        }
        bytes_read += got.len() as u64;
    }
}

/// Baseline 2: a 4 KiB O_DIRECT write at the end of the data, then fdatasync, one after the
/// other (fio `--bs=4k --direct=1 --fdatasync=1`). Appending into preallocated space, as the
/// engine does, so every sync also commits an unwritten-extent conversion.
pub async fn raw_fsync_latency(dir: &Path, syncs_count: u64) -> BaselineResult<Histogram<u64>> {
    let path = dir.join("raw-fsync.dat");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).dma_open(&path).await;
    let file = file.map_err(gio)?;
    let writes_total = SYNC_WARMUP_COUNT + syncs_count;
    file.pre_allocate(writes_total * SYNC_WRITE_BYTES as u64, false).await.map_err(gio)?;
    let buf = Rc::new(filled_buffer_sized(&file, SYNC_WRITE_BYTES, 7));
    let mut histogram = latency_histogram()?;
    for i in 0..writes_total {
        let start = Instant::now();
        let written_bytes = file.write_rc_at(buf.clone(), i * SYNC_WRITE_BYTES as u64).await.map_err(gio)?;
        if written_bytes != SYNC_WRITE_BYTES {
            return Err(format!("short raw write: {written_bytes} of {SYNC_WRITE_BYTES} bytes").into());
        }
        file.fdatasync().await.map_err(gio)?;
        if i >= SYNC_WARMUP_COUNT {
            histogram.saturating_record(start.elapsed().as_micros() as u64);
        }
    }
    file.close().await.map_err(gio)?;
    std::fs::remove_file(&path)?;
    Ok(histogram)
}

async fn close_rc(file: Rc<DmaFile>) -> BaselineResult<()> {
    file.close_rc().await.map_err(gio)?;
    Ok(())
}

fn filled_buffer(file: &DmaFile, seed: u64) -> DmaBuffer {
    filled_buffer_sized(file, IO_BYTES, seed)
}

fn filled_buffer_sized(file: &DmaFile, size_bytes: usize, seed: u64) -> DmaBuffer {
    let mut buf = file.alloc_dma_buffer(size_bytes);
    fill_pseudo_random(buf.as_bytes_mut(), seed);
    buf
}

/// Incompressible-looking bytes (xorshift64), so no layer below can cheat with zeroes.
pub fn fill_pseudo_random(out: &mut [u8], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}
