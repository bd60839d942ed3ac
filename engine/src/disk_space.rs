//! The free-space floor: a log refuses appends once its file system has fewer than
//! `LogConfig::disk_free_floor_bytes` bytes free, so producers get a clear `DiskFull` error
//! while there is still room for what a full disk would break (index files, the catalog,
//! consumer offsets, segment rolls), and fetches and retention keep working.
//!
//! Cost: not a syscall per append. `statvfs` runs at most once per
//! `DISK_FREE_CHECK_INTERVAL_MS`, or sooner once this log appended `DISK_FREE_CHECK_BYTES`
//! since the last check; in between, the free space is estimated as the last reading minus
//! what this log appended since. Other logs on the same file system are seen at the next
//! reading, so the floor should leave room for a few intervals of every log's writes.
//! `statvfs` reads counters the file system keeps in memory, so it runs on the executor
//! thread.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{AppendError, IoError};
use crate::limits::{DISK_FREE_CHECK_BYTES, DISK_FREE_CHECK_INTERVAL_MS};

pub(crate) struct FreeSpaceGuard {
    dir: PathBuf,
    floor_bytes: u64,
    /// `(when, free bytes then)` of the last reading.
    checked: Cell<Option<(Instant, u64)>>,
    appended_since_check_bytes: Cell<u64>,
}

impl FreeSpaceGuard {
    pub fn new(dir: &Path, floor_bytes: u64) -> FreeSpaceGuard {
        FreeSpaceGuard {
            dir: dir.to_path_buf(),
            floor_bytes,
            checked: Cell::new(None),
            appended_since_check_bytes: Cell::new(0),
        }
    }

    /// `Err(DiskFull)` when appending `size_bytes` would leave less than the floor free.
    pub fn check(&self, size_bytes: u64) -> Result<(), AppendError> {
        if self.floor_bytes == 0 {
            return Ok(());
        }
        let free_bytes = self.free_bytes_estimate()?;
        if free_bytes < self.floor_bytes.saturating_add(size_bytes) {
            return Err(AppendError::DiskFull { free_bytes, floor_bytes: self.floor_bytes });
        }
        Ok(())
    }

    /// Counts bytes this log accepted, for the estimate between readings.
    pub fn on_append(&self, size_bytes: u64) {
        if self.floor_bytes > 0 {
            self.appended_since_check_bytes.set(self.appended_since_check_bytes.get() + size_bytes);
        }
    }

    fn free_bytes_estimate(&self) -> Result<u64, IoError> {
        let appended = self.appended_since_check_bytes.get();
        let fresh = |at: Instant| at.elapsed() < Duration::from_millis(DISK_FREE_CHECK_INTERVAL_MS);
        if let Some((at, free_bytes)) = self.checked.get() {
            if fresh(at) && appended < DISK_FREE_CHECK_BYTES {
                return Ok(free_bytes.saturating_sub(appended));
            }
        }
        let free_bytes = free_bytes(&self.dir)?;
        self.checked.set(Some((Instant::now(), free_bytes)));
        self.appended_since_check_bytes.set(0);
        Ok(free_bytes)
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir` (what the
/// free-space floor compares against).
pub fn free_bytes(dir: &Path) -> Result<u64, IoError> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| IoError::new("statvfs", dir, std::io::Error::from(e)))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}
