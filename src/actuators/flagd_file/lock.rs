//! The advisory lock that serialises flag-file writers across processes.
//!
//! Two `canary` processes editing one flag file each read it, edit one flag and rename a
//! new version over it; without coordination the later rename drops the earlier edit
//! (a promoted flag left at 50 %, a kill switch lost). Every writer therefore holds an
//! exclusive `flock` on a sidecar file, `PATH.lock`, for its whole read-edit-write. The
//! lock is on a sidecar and not on the flag file itself because the flag file is
//! replaced by rename: a lock on the old inode would not exclude a writer that opened the
//! new one. The sidecar is created on first use and never removed (removing it would let
//! a writer lock an unlinked file while another locks a new one).
//!
//! The lock is advisory: it excludes other canary processes (and any tool that takes
//! the same `flock`), not an editor saving the file by hand; the read-back after every
//! write catches what it can of those. Waiting is bounded: a writer that cannot have the
//! lock within its wait gives up with a retryable `Unavailable` error naming the lock
//! file, having written nothing. Blocking I/O; called from `spawn_blocking`.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::actuators::ActuatorError;

use super::file::store_name;

/// How long a writer waits for the lock by default. An edit holds it for a few
/// milliseconds (read, parse, write, fsync, rename, read back), so five seconds means
/// another holder is stuck, not busy.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5);

/// The first pause between attempts; pauses double up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// An exclusive lock on a flag file's sidecar; released when dropped (closing the file
/// releases the `flock`).
#[derive(Debug)]
pub(super) struct FlagFileLock {
    _file: File,
}

/// The sidecar lock file of the flag file at `path`: `PATH.lock`, in the same directory.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock for the flag file at `path`, retrying until `wait` has
/// passed.
pub(super) fn lock(path: &Path, wait: Duration) -> Result<FlagFileLock, ActuatorError> {
    let lock_path = lock_path(path);
    let file = open(path, &lock_path)?;
    let deadline = Instant::now() + wait;
    let mut pause = FIRST_PAUSE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(FlagFileLock { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(error)) => {
                return Err(ActuatorError::Unavailable {
                    store: store_name(path),
                    message: format!("cannot lock {}: {error}", lock_path.display()),
                });
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ActuatorError::Unavailable {
                store: store_name(path),
                message: format!(
                    "another writer has held the lock file {} for longer than {} ms; \
                     nothing was written (retry, or find the process holding it)",
                    lock_path.display(),
                    wait.as_millis()
                ),
            });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Opens (creating when missing) the sidecar lock file; used by the healthcheck too,
/// so a lock file that cannot be created is found before a rollout.
pub(super) fn open(path: &Path, lock_path: &Path) -> Result<File, ActuatorError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)
        .map_err(|error| ActuatorError::Unavailable {
            store: store_name(path),
            message: format!("cannot open the lock file {}: {error}", lock_path.display()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_flag_file() {
        assert_eq!(
            lock_path(Path::new("/etc/flagd/flags.json")),
            Path::new("/etc/flagd/flags.json.lock")
        );
        assert_eq!(lock_path(Path::new("flags")), Path::new("flags.lock"));
    }
}
