//! The narrow file interface every segment read, write and sync goes through.
//!
//! Production uses glommio's `DmaFile` (O_DIRECT through io_uring) and nothing else: the
//! `SegmentFile` enum has one variant unless the `fault-injection` feature is on, so the match
//! compiles away and there is no allocation or dynamic dispatch per call. With the feature
//! (enabled only by the engine's own tests, through its dev-dependency on itself), a second
//! variant wraps the real file in `faulty::FaultyFile`, which injects seeded faults: short
//! writes, EIO, failed fdatasyncs, torn sectors on a simulated crash, flipped bits.
//!
//! Why an enum and not a trait object: one predictable branch, no `Box<dyn Future>` per I/O,
//! and the production build cannot even name the faulty layer.

#[cfg(feature = "fault-injection")]
pub mod faulty;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use crate::error::IoError;
use crate::fs::io_err;

/// A step of a multi-file operation at which a test may stop the process (`faulty.rs`,
/// `FaultInjector::stop_at_step`). Compiles to nothing without the `fault-injection` feature.
#[inline]
pub(crate) fn crash_point(step: &'static str, path: &Path) -> Result<(), IoError> {
    #[cfg(feature = "fault-injection")]
    if let Some(injector) = faulty::FaultInjector::installed() {
        injector.crash_point(step).map_err(|e| IoError::new(step, path, e))?;
    }
    let _ = (step, path);
    Ok(())
}

/// One segment file, opened for reading and writing with O_DIRECT.
pub(crate) enum SegmentFile {
    Dma(DmaFile),
    #[cfg(feature = "fault-injection")]
    Faulty(faulty::FaultyFile),
}

impl SegmentFile {
    /// Opens `path` for reading and writing with O_DIRECT (creating it if asked). Under fault
    /// injection, a file opened on an executor with an installed injector is wrapped by it.
    pub async fn open(path: &Path, create: bool) -> Result<Rc<SegmentFile>, IoError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await
            .map_err(|e| IoError::new(if create { "create" } else { "open" }, path, io_err(e)))?;
        #[cfg(feature = "fault-injection")]
        if let Some(injector) = faulty::FaultInjector::installed() {
            let size_bytes = file.file_size().await.map_err(|e| IoError::new("stat", path, io_err(e)))?;
            return Ok(Rc::new(SegmentFile::Faulty(faulty::FaultyFile::new(file, path, size_bytes, injector))));
        }
        Ok(Rc::new(SegmentFile::Dma(file)))
    }

    fn dma(&self) -> &DmaFile {
        match self {
            SegmentFile::Dma(f) => f,
            #[cfg(feature = "fault-injection")]
            SegmentFile::Faulty(f) => f.inner(),
        }
    }

    /// A buffer aligned for this file's O_DIRECT writes.
    pub fn alloc_dma_buffer(&self, size_bytes: usize) -> DmaBuffer {
        self.dma().alloc_dma_buffer(size_bytes)
    }

    /// Reads up to `len` bytes at `position` (any alignment; fewer at the end of the file).
    pub async fn read_at(&self, position: u64, len: usize) -> std::io::Result<ReadResult> {
        match self {
            SegmentFile::Dma(f) => f.read_at(position, len).await.map_err(io_err),
            #[cfg(feature = "fault-injection")]
            SegmentFile::Faulty(f) => f.read_at(position, len).await,
        }
    }

    /// Writes the whole aligned `buf` at the aligned `position`; returns the bytes written,
    /// which may be fewer than asked (the caller treats that as a failed write).
    pub async fn write_rc_at(&self, buf: Rc<DmaBuffer>, position: u64) -> std::io::Result<usize> {
        match self {
            SegmentFile::Dma(f) => f.write_rc_at(buf, position).await.map_err(io_err),
            #[cfg(feature = "fault-injection")]
            SegmentFile::Faulty(f) => f.write_rc_at(buf, position).await,
        }
    }

    /// fdatasync. A failure means the written bytes may be lost even if a later sync succeeds:
    /// callers never retry it (see `segment/appender.rs`).
    pub async fn fdatasync(&self) -> std::io::Result<()> {
        match self {
            SegmentFile::Dma(f) => f.fdatasync().await.map_err(io_err),
            #[cfg(feature = "fault-injection")]
            SegmentFile::Faulty(f) => f.fdatasync().await,
        }
    }

    /// syncfs(2): makes durable every write to this file's file system that completed before
    /// the call (journal commit and device cache flush, once for all files; `shard_sync.rs`).
    /// A failure is treated like a failed fdatasync of every file it covered: never retried.
    pub async fn sync_file_system(&self) -> std::io::Result<()> {
        match self {
            SegmentFile::Dma(f) => syncfs(f).await,
            #[cfg(feature = "fault-injection")]
            SegmentFile::Faulty(f) => f.sync_file_system().await,
        }
    }

    /// The device of the file system holding this file (`st_dev`): which syncs one `syncfs`
    /// can share.
    pub fn device(&self) -> std::io::Result<u64> {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `fstat` writes a `stat` through the pointer on success and we read it only
        // then; the descriptor is open for as long as `self` lives.
        let rc = unsafe { libc::fstat(self.dma().as_raw_fd(), stat.as_mut_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: initialised by the successful `fstat` above.
        Ok(unsafe { stat.assume_init() }.st_dev)
    }

    /// fallocate `size_bytes` from the start of the file (the file grows to that size).
    pub async fn pre_allocate(&self, size_bytes: u64) -> std::io::Result<()> {
        match self {
            SegmentFile::Dma(f) => f.pre_allocate(size_bytes, false).await.map_err(io_err),
            #[cfg(feature = "fault-injection")]
            SegmentFile::Faulty(f) => f.pre_allocate(size_bytes).await,
        }
    }

    pub async fn truncate(&self, size_bytes: u64) -> std::io::Result<()> {
        match self {
            SegmentFile::Dma(f) => f.truncate(size_bytes).await.map_err(io_err),
            #[cfg(feature = "fault-injection")]
            SegmentFile::Faulty(f) => f.truncate(size_bytes).await,
        }
    }

    pub async fn file_size(&self) -> std::io::Result<u64> {
        match self {
            SegmentFile::Dma(f) => f.file_size().await.map_err(io_err),
            #[cfg(feature = "fault-injection")]
            SegmentFile::Faulty(f) => f.file_size().await,
        }
    }
}

/// syncfs(2) of `file`'s file system on the executor's blocking thread: io_uring has no syncfs.
pub(crate) async fn syncfs(file: &DmaFile) -> std::io::Result<()> {
    // SAFETY: the descriptor is open while `file` is borrowed, which covers this call.
    let fd = unsafe { BorrowedFd::borrow_raw(file.as_raw_fd()) };
    // A duplicate the blocking thread owns and closes: the file may be closed (and its number
    // reused for another file) while the call runs.
    let owned = fd.try_clone_to_owned()?;
    glommio::executor()
        .spawn_blocking(move || {
            // SAFETY: `owned` is an open descriptor for the duration of the call.
            if unsafe { libc::syncfs(owned.as_raw_fd()) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
        .await
}
