//! The flagd-file actuator: moves a flag by editing an OpenFeature flagd flag file.
//!
//! A flag the engine rolls out looks like this (the shape flagd's docs use):
//!
//! ```json
//! {"flags": {"new-checkout": {
//!   "state": "ENABLED",
//!   "variants": {"on": true, "off": false},
//!   "defaultVariant": "off",
//!   "targeting": {"fractional": [
//!     {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
//!     ["on", 10], ["off", 90]]}}}}
//! ```
//!
//! - **Which variant is new**: the one whose value is `true` or that is named "on"; the
//!   fallback is `defaultVariant`. A flag where that cannot be told, or whose targeting
//!   is anything but one top-level `fractional` split between those two, is refused as
//!   `Invalid` rather than guessed at.
//! - **Percentages**: integer percentages are written as `["on", p], ["off", 100 - p]`,
//!   which old flagd (percentages summing to 100) and new flagd (relative weights) read
//!   alike. Finer percentages (0.1 % for a dark launch) are written as relative integer
//!   weights (`["on", 1], ["off", 999]`) and **need a flagd that reads relative
//!   weights**. 0 % keeps the flag enabled with weight 0; 100 % is `["on", 100], ["off", 0]`.
//! - **Kill switch** ([`KillMode`]), two ways:
//!   - `disable` (the default): `state` = "DISABLED" and the new variant's weight 0, so
//!     re-enabling never jumps back to the old percentage. flagd answers a disabled flag
//!     with reason `DISABLED` and the *application's* default value (not the flag's
//!     `defaultVariant`), so this kill switch is only as safe as the default the
//!     application passes in code; when the targeting cannot be edited the flag is still
//!     disabled.
//!   - `off-variant`: `state` stays "ENABLED", `defaultVariant` becomes the off variant
//!     and the targeting is removed, so flagd serves the off variant to every evaluation
//!     whatever the code default. Read back, such a flag is off at 0 %. When the off
//!     variant cannot be told, the flag is disabled instead.
//! - **Lossless and atomic**: the file is edited as a `serde_json::Value` (key order
//!   kept), so other flags, `$schema`, `$evaluators`, metadata and unknown keys stay as
//!   they were, and is replaced by a temp-file-and-rename (see `file.rs`).
//! - **One writer at a time, across processes**: every read-edit-write holds an
//!   exclusive advisory lock on the sidecar `PATH.lock` (see `lock.rs`), waiting at most
//!   [`DEFAULT_LOCK_WAIT`] (or [`FlagdFileActuator::with_lock_wait`]) and otherwise
//!   failing `Unavailable` (retryable) with nothing written; writers in this process are
//!   also serialised by a mutex, so they queue without polling. After a write the file
//!   is read back, still under the lock: the flag must say what was written and every
//!   other flag what was read, or the edit fails `Unavailable` (something that does not
//!   take the lock, such as a hand edit, raced it) and is retried.
//! - **Idempotent**: when an edit changes nothing, the file is not written at all.

mod document;
mod file;
mod lock;
mod weights;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Actuator, ActuatorError, FlagAction, FlagChange, FlagState};
use crate::domain::Percentage;
use document::Desired;
pub use document::KillMode;
pub use lock::{DEFAULT_LOCK_WAIT, lock_path};

/// Edits the flagd flag file at `path`; see the module docs.
#[derive(Debug)]
pub struct FlagdFileActuator {
    path: PathBuf,
    /// What the kill switch writes.
    kill_mode: KillMode,
    /// How long an edit waits for the cross-process lock on `PATH.lock`.
    lock_wait: Duration,
    /// Held for a whole read-modify-write, so two edits in this process never
    /// overwrite each other.
    write_lock: Mutex<()>,
}

impl FlagdFileActuator {
    /// An actuator for the flag file at `path`. Nothing is read until it is used; call
    /// [`Actuator::healthcheck`] to check the file before a rollout.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            kill_mode: KillMode::default(),
            lock_wait: DEFAULT_LOCK_WAIT,
            write_lock: Mutex::new(()),
        }
    }

    /// Pulls the kill switch the `kill_mode` way (see [`KillMode`]); reading the flag
    /// back follows the same mode.
    pub fn with_kill_mode(mut self, kill_mode: KillMode) -> Self {
        self.kill_mode = kill_mode;
        self
    }

    /// Waits at most `lock_wait` for the cross-process lock before an edit fails.
    pub fn with_lock_wait(mut self, lock_wait: Duration) -> Self {
        self.lock_wait = lock_wait;
        self
    }

    /// The flag file this actuator edits.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `edit` on the parsed file and writes the result back when it changed, then
    /// reads it back; all under the write locks (this process's mutex, then the
    /// cross-process file lock) and off the async runtime's threads.
    async fn edit<F>(&self, flag: &str, edit: F) -> Result<FlagState, ActuatorError>
    where
        F: FnOnce(&mut serde_json::Value, &str, &str) -> Result<FlagState, ActuatorError>
            + Send
            + 'static,
    {
        let _write_guard = self.write_lock.lock().await;
        let path = self.path.clone();
        let flag = flag.to_owned();
        let lock_wait = self.lock_wait;
        run_blocking(move || {
            let store = file::store_name(&path);
            let _file_lock = lock::lock(&path, lock_wait)?;
            let mut flag_file = file::read(&path)?;
            let before = flag_file.root.clone();
            let state = edit(&mut flag_file.root, &flag, &store)?;
            if flag_file.root == before {
                tracing::debug!(flag = %flag, rollout = %state.rollout, enabled = state.enabled, path = %store, "flag already in this state; flag file not written");
            } else {
                file::write_atomically(&path, &flag_file)?;
                verify_written(&path, &flag, &before, &flag_file.root, &store)?;
                if state.enabled {
                    tracing::info!(flag = %flag, rollout = %state.rollout, path = %store, "flag rollout set in flagd file");
                } else {
                    tracing::info!(flag = %flag, rollout = %state.rollout, path = %store, "flag killed in flagd file");
                }
            }
            Ok(state)
        })
        .await
    }
}

impl FlagdFileActuator {
    /// Enables the flag for `rollout` percent of traffic.
    async fn write_rollout(
        &self,
        flag: &str,
        rollout: Percentage,
    ) -> Result<FlagState, ActuatorError> {
        let desired = Desired {
            enabled: true,
            rollout,
        };
        self.edit(flag, move |root, flag, store| {
            document::apply(root, flag, desired, store)
        })
        .await
    }

    /// The kill switch.
    async fn write_kill(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        let kill_mode = self.kill_mode;
        self.edit(flag, move |root, flag, store| {
            let (state, note) = document::kill(root, flag, store, kill_mode)?;
            match (note, kill_mode) {
                (None, _) => {}
                (Some(note), KillMode::Disable) => {
                    tracing::warn!(flag = %flag, path = %store, reason = %note, "flag disabled but its rollout weights were left as they are; re-enabling it by hand restores them");
                }
                (Some(note), KillMode::OffVariant) => {
                    tracing::warn!(flag = %flag, path = %store, reason = %note, "flag disabled (flagd serves the application's default) because the off variant could not be served");
                }
            }
            Ok(state)
        })
        .await
    }
}

#[async_trait]
impl Actuator for FlagdFileActuator {
    fn describe(&self) -> String {
        format!("flagd-file:{}", self.path.display())
    }

    /// The file exists, parses, holds the flag in a shape this actuator can edit, its
    /// directory takes new files (which the atomic rename needs) and its lock file
    /// `PATH.lock` can be opened (it is created here when missing).
    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        let path = self.path.clone();
        let flag = flag.to_owned();
        let kill_mode = self.kill_mode;
        run_blocking(move || {
            let flag_file = file::read(&path)?;
            let state = document::read_state_for(
                &flag_file.root,
                &flag,
                &file::store_name(&path),
                kill_mode,
            )?;
            file::check_directory_writable(&path)?;
            lock::open(&path, &lock_path(&path))?;
            Ok(state)
        })
        .await
    }

    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        let path = self.path.clone();
        let flag = flag.to_owned();
        let kill_mode = self.kill_mode;
        run_blocking(move || {
            let flag_file = file::read(&path)?;
            document::read_state_for(&flag_file.root, &flag, &file::store_name(&path), kill_mode)
        })
        .await
    }

    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        match change.action {
            FlagAction::SetRollout { target } => self.write_rollout(&change.flag, target).await,
            FlagAction::Kill => self.write_kill(&change.flag).await,
        }
    }
}

/// Reads the file back after a write: `flag` must be as written and every other flag as
/// it was read. Under the lock another canary cannot have written in between, so a
/// difference means a writer that ignores the lock replaced the file; the error is
/// `Unavailable`, so the retry layer reads and edits again.
fn verify_written(
    path: &Path,
    flag: &str,
    before: &serde_json::Value,
    written: &serde_json::Value,
    store: &str,
) -> Result<(), ActuatorError> {
    let read_back = file::read(path)?;
    let raced = |what: String| ActuatorError::Unavailable {
        store: store.to_owned(),
        message: format!(
            "read back after writing flag {flag:?}, {what}: something that does not take \
             the lock file {} replaced the file meanwhile",
            lock_path(path).display()
        ),
    };
    if read_back.root["flags"][flag] != written["flags"][flag] {
        return Err(raced("the flag is not what was written".to_owned()));
    }
    let changed = document::other_flags_changed(before, &read_back.root, flag);
    if !changed.is_empty() {
        return Err(raced(format!(
            "other flags changed: {}",
            changed.join(", ")
        )));
    }
    if read_back.root != *written {
        return Err(raced("keys outside the flags changed".to_owned()));
    }
    Ok(())
}

/// Runs blocking file work on tokio's blocking pool. A panic inside is re-raised here,
/// where it would have happened without the pool.
async fn run_blocking<T, F>(work: F) -> Result<T, ActuatorError>
where
    F: FnOnce() -> Result<T, ActuatorError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(ActuatorError::Unavailable {
            store: "flagd file".to_owned(),
            message: format!("the file task was cancelled: {error}"),
        }),
    }
}
