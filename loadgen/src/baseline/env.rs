//! What the machine is: CPUs, kernel, the data directory's filesystem, the memlock limit.
//! Printed with every report, because a figure means nothing without the machine behind it.

use std::ffi::CStr;
use std::path::Path;

use super::BaselineResult;

const EXT4_SUPER_MAGIC: i64 = 0xEF53;
const TMPFS_MAGIC: i64 = 0x0102_1994;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794C_7630;

/// glommio registers a 10 MiB I/O buffer slab per ring and silently falls back to unregistered
/// buffers when RLIMIT_MEMLOCK is too low, which would make the baselines and the engine run
/// a different I/O path than production. Tries unlimited, then 512 MiB; failure is reported
/// (the limit is printed), not fatal.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return;
    }
    let bytes: libc::rlim_t = 512 << 20;
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: as above.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
}

pub fn memlock_limit() -> String {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a valid struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return format!("unknown ({})", std::io::Error::last_os_error());
    }
    let show = |v: libc::rlim_t| if v == libc::RLIM_INFINITY { "unlimited".to_owned() } else { format!("{v} B") };
    format!("soft {}, hard {}", show(limit.rlim_cur), show(limit.rlim_max))
}

/// The soft memlock limit in bytes; `None` when unlimited or unknown.
pub fn memlock_soft_bytes() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a valid struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub fn kernel() -> String {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return format!("unknown ({})", std::io::Error::last_os_error());
    }
    let field = |chars: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates every field within its array.
        unsafe { CStr::from_ptr(chars.as_ptr()) }.to_string_lossy().into_owned()
    };
    format!("{} {} {} ({})", field(&name.sysname), field(&name.release), field(&name.machine), field(&name.version))
}

pub struct FsType {
    pub magic: i64,
}

impl FsType {
    pub fn of(dir: &Path) -> BaselineResult<FsType> {
        let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
        // SAFETY: statfs is plain data; the kernel fills it.
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is NUL-terminated and `stat` is writable.
        if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("statfs {}: {e}", dir.display()).into());
        }
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between libc targets.
        Ok(FsType { magic: stat.f_type as i64 })
    }

    pub fn is_tmpfs(&self) -> bool {
        self.magic == TMPFS_MAGIC
    }

    pub fn describe(&self) -> String {
        let name = match self.magic {
            EXT4_SUPER_MAGIC => "ext4",
            TMPFS_MAGIC => "tmpfs",
            XFS_SUPER_MAGIC => "xfs",
            BTRFS_SUPER_MAGIC => "btrfs",
            OVERLAYFS_SUPER_MAGIC => "overlayfs",
            _ => "other",
        };
        format!("{name} (f_type 0x{:X})", self.magic)
    }
}

static DATA_DISK: std::sync::OnceLock<Option<BlockDevice>> = std::sync::OnceLock::new();

/// Remembers the data directory's block device for every executor thread to sample.
pub fn set_data_disk(dir: &Path) {
    let _ = DATA_DISK.set(BlockDevice::of_dir(dir));
}

pub fn data_disk() -> Option<&'static BlockDevice> {
    DATA_DISK.get().and_then(Option::as_ref)
}

/// The block device under the data directory, seen through its kernel counters
/// (`/sys/dev/block/MAJ:MIN/stat`, Documentation/block/stat.rst). Sampled around a case, it
/// says how busy the disk was, how deep its queue ran and how large the requests were —
/// whether a shortfall against the raw baseline is the disk idling or the disk being slow.
#[derive(Debug, Clone)]
pub struct BlockDevice {
    stat_path: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BlockStat {
    read_ios: u64,
    read_sectors: u64,
    write_ios: u64,
    write_sectors: u64,
    io_ticks_ms: u64,
    time_in_queue_ms: u64,
    flush_ios: u64,
}

impl BlockDevice {
    /// `None` when the counters are not readable (e.g. an overlay or network filesystem).
    pub fn of_dir(dir: &Path) -> Option<BlockDevice> {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(dir).ok()?.dev();
        // SAFETY: major/minor are pure arithmetic on the device number.
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        let stat_path = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"));
        let device = BlockDevice { stat_path };
        device.sample().map(|_| device)
    }

    pub fn sample(&self) -> Option<BlockStat> {
        let text = std::fs::read_to_string(&self.stat_path).ok()?;
        let fields: Vec<u64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        Some(BlockStat {
            read_ios: field(0),
            read_sectors: field(2),
            write_ios: field(4),
            write_sectors: field(6),
            io_ticks_ms: field(9),
            time_in_queue_ms: field(10),
            flush_ios: field(15),
        })
    }
}

/// What the disk did between two samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskActivity {
    pub busy_share: f64,
    pub queue_depth_avg: f64,
    pub write_request_bytes_avg: f64,
    pub read_request_bytes_avg: f64,
    pub flushes_count: u64,
}

impl DiskActivity {
    pub fn between(before: &BlockStat, after: &BlockStat, elapsed: std::time::Duration) -> DiskActivity {
        const SECTOR_BYTES: f64 = 512.0;
        let elapsed_ms = (elapsed.as_secs_f64() * 1e3).max(1e-3);
        let per_io = |sectors: u64, ios: u64| if ios == 0 { 0.0 } else { sectors as f64 * SECTOR_BYTES / ios as f64 };
        DiskActivity {
            busy_share: after.io_ticks_ms.saturating_sub(before.io_ticks_ms) as f64 / elapsed_ms,
            queue_depth_avg: after.time_in_queue_ms.saturating_sub(before.time_in_queue_ms) as f64 / elapsed_ms,
            write_request_bytes_avg: per_io(
                after.write_sectors.saturating_sub(before.write_sectors),
                after.write_ios.saturating_sub(before.write_ios),
            ),
            read_request_bytes_avg: per_io(
                after.read_sectors.saturating_sub(before.read_sectors),
                after.read_ios.saturating_sub(before.read_ios),
            ),
            flushes_count: after.flush_ios.saturating_sub(before.flush_ios),
        }
    }

    /// "disk busy 97%, queue 7.1, writes 512 KiB, 1 flushes": for report notes.
    pub fn describe(&self) -> String {
        let mut out =
            format!("disk busy {:.0}%, queue {:.1}", (self.busy_share * 100.0).min(100.0), self.queue_depth_avg);
        if self.write_request_bytes_avg > 0.0 {
            out.push_str(&format!(", writes {:.0} KiB", self.write_request_bytes_avg / 1024.0));
        }
        if self.read_request_bytes_avg > 0.0 {
            out.push_str(&format!(", reads {:.0} KiB", self.read_request_bytes_avg / 1024.0));
        }
        if self.flushes_count > 0 {
            out.push_str(&format!(", {} flushes", self.flushes_count));
        }
        out
    }
}
