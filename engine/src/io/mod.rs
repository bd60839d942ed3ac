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
