//! A small ext4 file system on a loop device, for full-disk tests (needs root, mkfs.ext4 and
//! loop devices). Shared by `engine/tests/enospc.rs` and `server/tests/full_disk.rs` (which
//! includes this file with `#[path]`). Where loop mounts are impossible the tests fail unless
//! `SHARDLOG_SKIP_LOOP_TESTS=1` is set, in which case they say they were skipped.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SKIP_ENV: &str = "SHARDLOG_SKIP_LOOP_TESTS";

/// A freshly made ext4 file system mounted on a loop device; unmounted (and its loop device
/// detached) on drop.
pub struct LoopMount {
    mount_point: PathBuf,
    image: PathBuf,
    // Dropped after `drop` unmounts: the mount point, then the image's directory.
    _mount_dir: tempfile::TempDir,
    _image_dir: tempfile::TempDir,
}

fn command(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("{program} {args:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("{program} {args:?}: {e}")),
    }
}

/// A temp dir on the real file system (`SHARDLOG_TEST_DIR` or the system temp dir).
fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let base = std::env::var_os("SHARDLOG_TEST_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new().prefix(prefix).tempdir_in(base).unwrap()
}

impl LoopMount {
    pub fn new(image_bytes: u64) -> Result<LoopMount, String> {
        let image_dir = temp_dir("shardlog-loop-img-");
        let mount_dir = temp_dir("shardlog-loop-mnt-");
        let image = image_dir.path().join("fs.img");
        let file = std::fs::File::create(&image).map_err(|e| format!("create {image:?}: {e}"))?;
        file.set_len(image_bytes).map_err(|e| format!("set_len {image:?}: {e}"))?;
        drop(file);
        // -m 0: no blocks reserved for root, so the space is the same for every user.
        command("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), "-m".as_ref(), "0".as_ref(), image.as_os_str()])?;
        let mount_point = mount_dir.path().join("mnt");
        std::fs::create_dir(&mount_point).map_err(|e| format!("mkdir {mount_point:?}: {e}"))?;
        command("mount", &["-o".as_ref(), "loop".as_ref(), image.as_os_str(), mount_point.as_os_str()])?;
        Ok(LoopMount { mount_point, image, _mount_dir: mount_dir, _image_dir: image_dir })
    }

    /// Mounts, or says why the test cannot run: `None` means skip (only when asked to).
    pub fn new_or_skip(test: &str, image_bytes: u64) -> Option<LoopMount> {
        match LoopMount::new(image_bytes) {
            Ok(mount) => Some(mount),
            Err(e) if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") => {
                // Straight to the stream, past libtest's capture, so the skip is always seen.
                let line = format!("\nSKIPPED: {test}: cannot mount a loop file system ({e}); {SKIP_ENV}=1\n");
                let _ = std::io::stderr().write_all(line.as_bytes());
                None
            }
            Err(e) => panic!(
                "{test} needs a loop-mounted ext4 file system (root, mkfs.ext4, loop devices): {e}. \
                 Set {SKIP_ENV}=1 to skip it where that is impossible."
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if command("umount", &[self.mount_point.as_os_str()]).is_err() {
            if let Err(e) = command("umount", &["-l".as_ref(), self.mount_point.as_os_str()]) {
                eprintln!("warning: could not unmount {:?}: {e}", self.mount_point);
            }
        }
        // `mount -o loop` sets autoclear; detach explicitly in case it did not.
        if let Ok(out) = Command::new("losetup").arg("-j").arg(&self.image).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(device) = line.split(':').next().filter(|d| !d.is_empty()) {
                    let _ = command("losetup", &["-d".as_ref(), device.as_ref()]);
                }
            }
        }
    }
}
