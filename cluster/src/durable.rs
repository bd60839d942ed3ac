//! Small durable files, replaced whole: the Raft vote, the snapshot, and the log file when it is
//! purged. A crash leaves either the old or the new content, never a mix: the new content goes
//! to a temporary file that is synced, renamed over the old one, and the directory is synced so
//! that the rename itself survives a crash.
//!
//! Everything here blocks; async callers go through `blocking`, which runs it on the
//! executor's blocking pool so the shard's executor never waits for a disk.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::IoError;

/// Suffix of the temporary file a replacement writes first; leftovers are removed at open.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Runs `f` on the current glommio executor's blocking thread pool.
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// The temporary file that `replace` writes before renaming it to `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(TEMP_SUFFIX);
    path.with_file_name(name)
}

/// Replaces the file at `path` with `bytes`, atomically and durably. Callers never replace
/// the same file from two places at once (each file has one writer).
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let temp = temp_path(path);
    let mut file = File::create(&temp).map_err(|e| IoError::new("create", &temp, e))?;
    file.write_all(bytes).map_err(|e| IoError::new("write", &temp, e))?;
    file.sync_all().map_err(|e| IoError::new("fsync", &temp, e))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(|e| IoError::new("rename", path, e))?;
    sync_parent(path)
}

/// Syncs the directory holding `path`, so that a rename or a file creation in it is durable.
pub fn sync_parent(path: &Path) -> Result<(), IoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let handle = File::open(dir).map_err(|e| IoError::new("open dir", dir, e))?;
    handle.sync_all().map_err(|e| IoError::new("fsync dir", dir, e))
}

/// Removes the temporary file a replacement of `path` left behind when it crashed.
pub fn remove_leftover(path: &Path) -> Result<(), IoError> {
    let temp = temp_path(path);
    match std::fs::remove_file(&temp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("remove", &temp, e)),
    }
}

/// Reads a whole file of at most `max_bytes`; `None` if it does not exist.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, IoError> {
    let bytes = match std::fs::metadata(path) {
        Ok(meta) if meta.len() > max_bytes => {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} bytes, more than the {max_bytes} bytes such a file may hold", meta.len()),
            );
            return Err(IoError::new("read", path, e));
        }
        Ok(_) => std::fs::read(path).map_err(|e| IoError::new("read", path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::new("stat", path, e)),
    };
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_writes_the_new_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let path = dir.path().join("f.json");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!temp_path(&path).exists());
        assert_eq!(read_bounded(&path, 3).unwrap().unwrap(), b"two");
        assert!(read_bounded(&path, 2).is_err(), "a file past its bound is an error");
        assert!(read_bounded(&dir.path().join("none"), 2).unwrap().is_none());
    }
}
