//! The flag file on disk: reading and parsing it, and replacing it atomically.
//! Blocking I/O; the actuator calls it from `spawn_blocking`.
//!
//! flagd watches the file and reloads it on change, so it must never see a half-written
//! file: a new version is written to a temporary file in the same directory, flushed to
//! disk, given the original's permissions and renamed over the original (a rename within
//! one file system is atomic). The file's indentation and final newline are kept, so
//! the only lines that change are the ones the edit changed. This module knows nothing
//! of flags; `document` edits the parsed JSON.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{CompactFormatter, PrettyFormatter, Serializer};

use crate::actuators::ActuatorError;

/// A parsed flag file and how it was laid out.
#[derive(Debug, Clone)]
pub(super) struct FlagFile {
    /// The whole document.
    pub(super) root: Value,
    layout: Layout,
}

/// How a file was formatted, so a rewrite looks like the original.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// The indentation unit (`"  "`, `"\t"`), or `None` for a file on one line.
    indent: Option<String>,
    /// Whether the file ended with a newline.
    final_newline: bool,
}

impl Layout {
    /// Guesses the layout from the text: the indentation of the first indented line.
    fn of(text: &str) -> Self {
        let indent = text.lines().skip(1).find_map(|line| {
            let content = line.trim_start_matches([' ', '\t']);
            let width = line.len() - content.len();
            (width > 0 && !content.is_empty()).then(|| line[..width].to_owned())
        });
        Layout {
            indent,
            final_newline: text.ends_with('\n'),
        }
    }
}

/// Reads and parses the file at `path`.
pub(super) fn read(path: &Path) -> Result<FlagFile, ActuatorError> {
    let bytes = fs::read(path).map_err(|error| unavailable(path, "cannot read it", &error))?;
    let root: Value = serde_json::from_slice(&bytes).map_err(|error| ActuatorError::Invalid {
        store: store_name(path),
        message: json_error_message(&error),
    })?;
    let layout = Layout::of(&String::from_utf8_lossy(&bytes));
    Ok(FlagFile { root, layout })
}

/// Replaces the file at `path` with `file`, atomically, keeping the original's
/// permissions (and, where allowed, its owner).
pub(super) fn write_atomically(path: &Path, file: &FlagFile) -> Result<(), ActuatorError> {
    let bytes = render(file);
    let original = fs::metadata(path)
        .map_err(|error| unavailable(path, "cannot read its metadata", &error))?;
    let (temporary_path, mut temporary) = create_temporary_beside(path)?;
    let written = (|| {
        temporary.write_all(&bytes)?;
        temporary.set_permissions(original.permissions())?;
        keep_owner(&temporary, &original);
        temporary.sync_all()?;
        drop(temporary);
        fs::rename(&temporary_path, path)
    })();
    if let Err(error) = written {
        // The original is untouched; only our temporary file needs cleaning up.
        let _ = fs::remove_file(&temporary_path);
        return Err(unavailable(path, "cannot replace it", &error));
    }
    // Flushing the directory makes the rename itself survive a crash. Some file systems
    // cannot fsync a directory; the file is in place either way.
    if let Err(error) = File::open(directory_of(path)).and_then(|directory| directory.sync_all()) {
        tracing::debug!(path = %path.display(), %error, "could not fsync the flag file's directory");
    }
    Ok(())
}

/// Checks that a file can be created in the flag file's directory (which the atomic
/// rename needs) by creating and removing one.
pub(super) fn check_directory_writable(path: &Path) -> Result<(), ActuatorError> {
    let (temporary_path, temporary) = create_temporary_beside(path)?;
    drop(temporary);
    fs::remove_file(&temporary_path)
        .map_err(|error| unavailable(path, "cannot remove a temporary file beside it", &error))
}

/// The document as text in the original layout.
fn render(file: &FlagFile) -> Vec<u8> {
    let mut bytes = Vec::new();
    let serialized = match &file.layout.indent {
        Some(indent) => {
            let formatter = PrettyFormatter::with_indent(indent.as_bytes());
            file.root
                .serialize(&mut Serializer::with_formatter(&mut bytes, formatter))
        }
        None => file.root.serialize(&mut Serializer::with_formatter(
            &mut bytes,
            CompactFormatter,
        )),
    };
    serialized.expect("a serde_json::Value always serializes to a Vec");
    if file.layout.final_newline {
        bytes.push(b'\n');
    }
    bytes
}

/// Creates a new, empty temporary file in the same directory as `path`, so the rename
/// stays on one file system. The name starts with a dot so flagd's directory watchers
/// and humans listing the directory skip it.
fn create_temporary_beside(path: &Path) -> Result<(PathBuf, File), ActuatorError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .map_or_else(|| "flags".into(), |name| name.to_string_lossy());
    let temporary_path = directory_of(path).join(format!(
        ".{file_name}.canary-{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary_path)
        .map_err(|error| {
            unavailable(
                path,
                &format!(
                    "cannot create a temporary file in {}",
                    directory_of(path).display()
                ),
                &error,
            )
        })?;
    Ok((temporary_path, file))
}

/// The directory holding `path` (`.` for a bare file name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Gives the new file the original's owner and group. Only a privileged process can
/// change the owner; elsewhere the new file keeps ours, which is fine for the usual
/// case of canary owning the file it edits.
#[cfg(unix)]
fn keep_owner(temporary: &File, original: &fs::Metadata) {
    use std::os::unix::fs::{MetadataExt, fchown};
    if let Err(error) = fchown(temporary, Some(original.uid()), Some(original.gid())) {
        tracing::debug!(%error, "could not give the new flag file the original's owner");
    }
}

#[cfg(not(unix))]
fn keep_owner(_temporary: &File, _original: &fs::Metadata) {}

/// The name a path goes by in errors.
pub(super) fn store_name(path: &Path) -> String {
    path.display().to_string()
}

fn unavailable(path: &Path, what: &str, error: &io::Error) -> ActuatorError {
    ActuatorError::Unavailable {
        store: store_name(path),
        message: format!("{what}: {error}"),
    }
}

/// "malformed JSON at line 3, column 7: expected `,` or `}`" — serde_json's message
/// without its own location suffix, which is moved to the front.
fn json_error_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let reason = full.strip_suffix(&suffix).unwrap_or(&full);
    format!(
        "malformed JSON at line {}, column {}: {reason}",
        error.line(),
        error.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_takes_the_first_indented_lines_indentation() {
        let four = Layout::of("{\n    \"flags\": {\n        \"a\": 1\n    }\n}\n");
        assert_eq!(four.indent.as_deref(), Some("    "));
        assert!(four.final_newline);
        let tabs = Layout::of("{\n\t\"flags\": {}\n}");
        assert_eq!(tabs.indent.as_deref(), Some("\t"));
        assert!(!tabs.final_newline);
    }

    #[test]
    fn a_file_on_one_line_is_written_on_one_line() {
        let layout = Layout::of("{\"flags\":{}}\n");
        assert_eq!(layout.indent, None);
        let file = FlagFile {
            root: serde_json::json!({"flags": {"a": [1, 2]}}),
            layout,
        };
        assert_eq!(render(&file), b"{\"flags\":{\"a\":[1,2]}}\n");
    }

    #[test]
    fn json_errors_put_line_and_column_first() {
        let error = serde_json::from_str::<Value>("{\n  \"flags\": {,\n}").unwrap_err();
        assert_eq!(
            json_error_message(&error),
            "malformed JSON at line 2, column 13: key must be a string"
        );
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(directory_of(Path::new("flags.json")), Path::new("."));
        assert_eq!(
            directory_of(Path::new("/etc/flagd/flags.json")),
            Path::new("/etc/flagd")
        );
    }
}
