//! Small file-system helpers on top of glommio: whole-file reads, atomic whole-file writes and
//! directory syncs. Everything here goes through io_uring or glommio's blocking pool, never a
//! blocking syscall on the executor thread, because one stalled executor stalls every
//! partition of its shard.

use std::path::{Path, PathBuf};

use glommio::io::{Directory, DmaFile, OpenOptions};

use crate::error::IoError;
use crate::limits::IO_ALIGN_BYTES;

/// Converts glommio's error into the std error it wraps (it keeps the OS error code, which is
/// how ENOSPC is recognised).
pub(crate) fn io_err<T>(e: glommio::GlommioError<T>) -> std::io::Error {
    std::io::Error::from(e)
}

pub(crate) fn align_down(value: u64) -> u64 {
    value & !(IO_ALIGN_BYTES - 1)
}

pub(crate) fn align_up(value: u64) -> u64 {
    align_down(value + IO_ALIGN_BYTES - 1)
}

/// Reads a whole (small) file. `Ok(None)` when it does not exist.
pub(crate) async fn read_file(path: &Path) -> Result<Option<Vec<u8>>, IoError> {
    let file = match DmaFile::open(path).await {
        Ok(file) => file,
        Err(e) => {
            let e = io_err(e);
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(IoError::new("open", path, e));
        }
    };
    let result = read_whole(&file, path).await;
    let _ = file.close().await;
    result.map(Some)
}

async fn read_whole(file: &DmaFile, path: &Path) -> Result<Vec<u8>, IoError> {
    let size_bytes = file.file_size().await.map_err(|e| IoError::new("stat", path, io_err(e)))?;
    let mut out = Vec::with_capacity(size_bytes as usize);
    while (out.len() as u64) < size_bytes {
        let want = (size_bytes - out.len() as u64).min(crate::limits::RECOVERY_READ_BYTES as u64);
        let got =
            file.read_at(out.len() as u64, want as usize).await.map_err(|e| IoError::new("read", path, io_err(e)))?;
        if got.is_empty() {
            break; // Shrunk under us; return what is there and let the caller's checksum decide.
        }
        out.extend_from_slice(&got);
    }
    Ok(out)
}

/// Writes `bytes` to `dir/name` so that after a crash the file holds either its old content or
/// all of `bytes`: write a temp file, fdatasync it, rename it over the target, fsync the
/// directory (without that last step the rename itself may not survive power loss).
pub(crate) async fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), IoError> {
    let tmp_path = dir.join(format!("{name}.tmp"));
    let final_path = dir.join(name);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&tmp_path)
        .await
        .map_err(|e| IoError::new("create", &tmp_path, io_err(e)))?;
    let result = write_padded(&file, &tmp_path, bytes).await;
    let _ = file.close().await;
    result?;
    glommio::io::rename(&tmp_path, &final_path).await.map_err(|e| IoError::new("rename", &tmp_path, io_err(e)))?;
    sync_dir(dir).await
}

/// O_DIRECT writes whole aligned blocks, so write the padded image, then cut the file back
/// to the exact length before syncing.
async fn write_padded(file: &DmaFile, path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    if !bytes.is_empty() {
        let padded_bytes = align_up(bytes.len() as u64) as usize;
        let mut buf = file.alloc_dma_buffer(padded_bytes);
        let dst = buf.as_bytes_mut();
        dst[..bytes.len()].copy_from_slice(bytes);
        dst[bytes.len()..].fill(0);
        file.write_at(buf, 0).await.map_err(|e| IoError::new("write", path, io_err(e)))?;
        file.truncate(bytes.len() as u64).await.map_err(|e| IoError::new("truncate", path, io_err(e)))?;
    }
    file.fdatasync().await.map_err(|e| IoError::new("fdatasync", path, io_err(e)))
}

pub(crate) async fn sync_dir(dir: &Path) -> Result<(), IoError> {
    let handle = Directory::open(dir).await.map_err(|e| IoError::new("open dir", dir, io_err(e)))?;
    let result = handle.sync().await.map_err(|e| IoError::new("fsync dir", dir, io_err(e)));
    let _ = handle.close().await;
    result
}

/// Removes a file; a file that is already gone is not an error.
pub(crate) async fn remove_file(path: &Path) -> Result<(), IoError> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = io_err(e);
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(IoError::new("remove", path, e))
            }
        }
    }
}

/// Creates a directory and its parents on the blocking pool.
pub(crate) async fn create_dir_all(dir: &Path) -> Result<(), IoError> {
    let owned: PathBuf = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || std::fs::create_dir_all(&owned))
        .await
        .map_err(|e| IoError::new("mkdir", dir, e))
}

/// Lists the file names in a directory on the blocking pool.
pub(crate) async fn list_dir(dir: &Path) -> Result<Vec<String>, IoError> {
    let owned: PathBuf = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || -> std::io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&owned)? {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        })
        .await
        .map_err(|e| IoError::new("readdir", dir, e))
}

/// Removes a directory tree on the blocking pool (used when a topic is deleted).
pub(crate) async fn remove_dir_all(dir: &Path) -> Result<(), IoError> {
    let owned: PathBuf = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || match std::fs::remove_dir_all(&owned) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
        .map_err(|e| IoError::new("rmdir", dir, e))
}

thread_local! {
    /// Devices whose io_uring poll-ring support glommio has probed on this executor thread
    /// (glommio keeps its answer per thread, too).
    static PROBED_DEVICES: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// glommio 0.9 decides, once per device and executor thread, whether O_DIRECT reads may use
/// the polled (IOPOLL) ring, by reading the first block of the first file it opens there. If
/// that file is empty the read "succeeds" with 0 bytes, glommio concludes the device supports
/// polling, and every later read on that device fails with EOPNOTSUPP (virtio disks do not
/// poll). So before opening any segment, open a file that holds a whole block.
pub(crate) async fn prime_direct_io_probe(dir: &Path) -> Result<(), IoError> {
    use std::os::unix::fs::MetadataExt;
    let owned = dir.to_path_buf();
    let dev = glommio::executor()
        .spawn_blocking(move || std::fs::metadata(&owned).map(|m| m.dev()))
        .await
        .map_err(|e| IoError::new("stat", dir, e))?;
    if PROBED_DEVICES.with(|d| d.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe_path = dir.join(".direct-io-probe");
    let probe = probe_path.clone();
    glommio::executor()
        .spawn_blocking(move || std::fs::write(&probe, vec![0u8; IO_ALIGN_BYTES as usize]))
        .await
        .map_err(|e| IoError::new("write", &probe_path, e))?;
    let file = DmaFile::open(&probe_path).await.map_err(|e| IoError::new("probe", &probe_path, io_err(e)))?;
    let _ = file.close().await;
    remove_file(&probe_path).await?;
    PROBED_DEVICES.with(|d| d.borrow_mut().push(dev));
    Ok(())
}
