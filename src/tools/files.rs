//! The files tools (`files_read`, `files_list`, `files_write`): the agent's access to the user's files, confined
//! to one folder the user chose (by default `files/` in the data dir).
//!
//! The folder's path is the only state these tools hold. Every call opens it as a capability
//! ([`cap_std::fs::Dir`]) and does every operation through that handle, so `..`, absolute paths and symlinks that
//! lead out are refused by the operating system (`openat2` with `RESOLVE_BENEATH` on Linux, cap-std's own
//! component-by-component checks elsewhere), not by string checks alone. The string checks in `relative_path`
//! come first only so that the model gets a reason it can act on. Opening the folder on each call (rather than
//! once) means a folder the user deleted or recreated is picked up without a restart.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use serde_json::{json, Value};

use super::{object_schema, CallContext, Effect, Origin, Tool, ToolError, ToolSpec};

/// The most a read returns and a write accepts: enough for notes and code, small enough for a context window.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// The most entries one listing returns; a folder with more is cut, in name order.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Local file operations bounded by [`MAX_FILE_BYTES`] finish well within this even on a slow disk.
const TIMEOUT_MS: u64 = 5000;
/// Why an escape attempt was refused. cap-std cannot tell a symlink that leads out from a `..` that does, and the
/// string checks have already caught the `..`, so a symlink is the likely cause.
const ESCAPE_REASON: &str = "the path leads outside the files folder (through a symlink?)";
const PATH_EXAMPLE: &str = "give a path inside the files folder, e.g. notes/todo.txt";

/// Which of the three operations a [`FileTool`] performs; they share the folder and the error mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileOp {
    Read,
    List,
    Write,
}

/// One of the files tools, bound to the folder it may touch.
pub struct FileTool {
    spec: ToolSpec,
    op: FileOp,
    root: PathBuf,
}

/// The three files tools over `root`. The folder is created on first use; if that fails, every call fails with
/// an error naming the folder.
pub fn file_tools(root: PathBuf) -> Vec<Arc<dyn Tool>> {
    [FileOp::Read, FileOp::List, FileOp::Write]
        .into_iter()
        .map(|op| Arc::new(FileTool::new(op, root.clone())) as Arc<dyn Tool>)
        .collect()
}

impl FileTool {
    fn new(op: FileOp, root: PathBuf) -> FileTool {
        let path_property = json!({
            "type": "string",
            "minLength": 1,
            "description": "A path relative to the files folder, e.g. notes/todo.txt",
        });
        let spec = match op {
            FileOp::Read => ToolSpec {
                name: "files_read".into(),
                description: "Reads a UTF-8 text file in the user's files folder (at most the first 1 MiB). Paths are \
                              relative to that folder, e.g. notes/todo.txt."
                    .into(),
                input_schema: object_schema(json!({ "path": path_property }), &["path"]),
                output_schema: object_schema(
                    json!({
                        "path": { "type": "string" },
                        "content": { "type": "string" },
                        "bytes": { "type": "integer", "minimum": 0, "description": "The size of the file" },
                        "truncated": { "type": "boolean", "description": "True when content is only the first 1 MiB" },
                    }),
                    &["path", "content", "bytes", "truncated"],
                ),
                effect: Effect::Read,
                timeout_ms: TIMEOUT_MS,
                idempotent: true,
                capability: Some("files_read".into()),
                origin: Origin::Document,
            },
            FileOp::List => ToolSpec {
                name: "files_list".into(),
                description: "Lists a folder inside the user's files folder (the folder itself when no path is given), \
                              sorted by name, at most 1000 entries."
                    .into(),
                input_schema: object_schema(
                    json!({ "path": {
                        "type": "string",
                        "default": ".",
                        "description": "A folder relative to the files folder; . is the files folder itself",
                    }}),
                    &[],
                ),
                output_schema: object_schema(
                    json!({
                        "path": { "type": "string" },
                        "entries": {
                            "type": "array",
                            "maxItems": MAX_LIST_ENTRIES,
                            "items": object_schema(
                                json!({
                                    "name": { "type": "string" },
                                    "kind": { "enum": ["file", "dir", "symlink"] },
                                    "bytes": { "type": "integer", "minimum": 0 },
                                }),
                                &["name", "kind", "bytes"],
                            ),
                        },
                        "truncated": { "type": "boolean", "description": "True when the folder holds more entries" },
                    }),
                    &["path", "entries", "truncated"],
                ),
                effect: Effect::Read,
                timeout_ms: TIMEOUT_MS,
                idempotent: true,
                capability: None,
                origin: Origin::Document,
            },
            FileOp::Write => ToolSpec {
                name: "files_write".into(),
                description: "Writes a UTF-8 text file in the user's files folder, creating folders on the way. An \
                              existing file is replaced only with overwrite: true."
                    .into(),
                input_schema: object_schema(
                    json!({
                        "path": path_property,
                        "content": { "type": "string", "maxLength": MAX_FILE_BYTES },
                        "overwrite": { "type": "boolean", "default": false },
                    }),
                    &["path", "content"],
                ),
                output_schema: object_schema(
                    json!({
                        "path": { "type": "string" },
                        "bytes": { "type": "integer", "minimum": 0 },
                        "created": { "type": "boolean", "description": "False when an existing file was replaced" },
                    }),
                    &["path", "bytes", "created"],
                ),
                effect: Effect::Write,
                timeout_ms: TIMEOUT_MS,
                // Writing the same content twice leaves the same file.
                idempotent: true,
                capability: None,
                origin: Origin::Keel,
            },
        };
        FileTool { spec, op, root }
    }

    fn refused(&self, reason: impl Into<String>) -> ToolError {
        ToolError::Refused { tool: self.spec.name.clone(), reason: reason.into() }
    }

    fn failed(&self, message: impl Into<String>) -> ToolError {
        ToolError::Failed { tool: self.spec.name.clone(), message: message.into() }
    }

    /// Opens the files folder as the capability every operation goes through, creating it first.
    fn open_root(&self) -> Result<Dir, ToolError> {
        std::fs::create_dir_all(&self.root)
            .and_then(|()| Dir::open_ambient_dir(&self.root, ambient_authority()))
            .map_err(|e| {
                self.failed(format!(
                    "cannot open the files folder {}: {e}; check that Keel may create and write it, or choose \
                     another folder in Settings",
                    self.root.display()
                ))
            })
    }

    /// Turns the model's path into a clean relative one (no `.`, no empty parts), refusing what can only mean
    /// "outside the folder". An empty result names the folder itself.
    fn relative_path(&self, raw: &str) -> Result<PathBuf, ToolError> {
        if raw.trim().is_empty() {
            return Err(self.refused(format!("an empty path is refused; {PATH_EXAMPLE}")));
        }
        if raw.contains('\0') {
            return Err(self.refused(format!("paths with a NUL character are refused; {PATH_EXAMPLE}")));
        }
        let path = Path::new(raw);
        if path.is_absolute() || path.has_root() {
            return Err(self.refused(format!("absolute paths are refused; {PATH_EXAMPLE}")));
        }
        let mut clean = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(self.refused(format!("paths with .. are refused; {PATH_EXAMPLE}"))),
                // A Windows drive prefix without a root (`C:notes`) is still a path on another drive.
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refused(format!("absolute paths are refused; {PATH_EXAMPLE}")))
                }
            }
        }
        Ok(clean)
    }

    /// Like [`FileTool::relative_path`], for operations that need a file rather than the folder itself.
    fn file_path(&self, raw: &str) -> Result<PathBuf, ToolError> {
        let clean = self.relative_path(raw)?;
        if clean.as_os_str().is_empty() {
            return Err(self.refused(format!("{raw:?} names the files folder itself; {PATH_EXAMPLE}")));
        }
        Ok(clean)
    }

    /// Maps an I/O error on `shown` (a `what`: "file" or "folder") to the class the orchestrator acts on.
    fn io_error(&self, what: &str, shown: &str, e: io::Error) -> ToolError {
        match e.kind() {
            io::ErrorKind::NotFound => self.failed(format!("no {what} named {shown} in the files folder")),
            // cap-std reports an escape attempt (openat2's EXDEV on Linux, its own checks elsewhere) as
            // PermissionDenied without an OS error code; a real EACCES carries one. A bare EXDEV means the same.
            io::ErrorKind::PermissionDenied if e.raw_os_error().is_none() => self.refused(ESCAPE_REASON),
            io::ErrorKind::CrossesDevices => self.refused(ESCAPE_REASON),
            io::ErrorKind::PermissionDenied => {
                self.refused(format!("the system denies access to {shown}; check its permissions"))
            }
            io::ErrorKind::NotADirectory => self.failed(format!("{shown} goes through a file as if it were a folder")),
            _ => self.failed(format!("{shown}: {e}")),
        }
    }

    fn read(&self, args: &Value) -> Result<Value, ToolError> {
        let rel = self.file_path(args.get("path").and_then(Value::as_str).unwrap_or_default())?;
        let shown = display_path(&rel);
        let root = self.open_root()?;
        // Checking the kind first keeps a FIFO or device from blocking the open; `metadata` follows symlinks, but
        // only inside the folder.
        let meta = root.metadata(&rel).map_err(|e| self.io_error("file", &shown, e))?;
        if meta.is_dir() {
            return Err(self.failed(format!("{shown} is a folder; use files_list to see what it holds")));
        }
        if !meta.is_file() {
            return Err(self.failed(format!("{shown} is not a regular file; files_read reads text files only")));
        }
        let file = root.open(&rel).map_err(|e| self.io_error("file", &shown, e))?;
        let mut bytes = Vec::with_capacity((meta.len() as usize).min(MAX_FILE_BYTES + 1));
        file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| self.io_error("file", &shown, e))?;
        let truncated = bytes.len() > MAX_FILE_BYTES;
        bytes.truncate(MAX_FILE_BYTES);
        let content = match String::from_utf8(bytes) {
            Ok(text) => text,
            // The cut at 1 MiB can split the last character; the text before it is still text.
            Err(e) if truncated && e.utf8_error().error_len().is_none() => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
            Err(_) => return Err(self.failed(format!("{shown} is not UTF-8 text; files_read reads text files only"))),
        };
        Ok(json!({ "path": shown, "content": content, "bytes": meta.len(), "truncated": truncated }))
    }

    fn list(&self, args: &Value) -> Result<Value, ToolError> {
        let rel = self.relative_path(args.get("path").and_then(Value::as_str).unwrap_or("."))?;
        let shown = if rel.as_os_str().is_empty() { ".".to_owned() } else { display_path(&rel) };
        let root = self.open_root()?;
        let dir = if rel.as_os_str().is_empty() {
            root
        } else {
            let meta = root.metadata(&rel).map_err(|e| self.io_error("folder", &shown, e))?;
            if !meta.is_dir() {
                return Err(self.failed(format!("{shown} is a file, not a folder; use files_read to read it")));
            }
            root.open_dir(&rel).map_err(|e| self.io_error("folder", &shown, e))?
        };
        let mut entries = Vec::new();
        for entry in dir.entries().map_err(|e| self.io_error("folder", &shown, e))? {
            let entry = entry.map_err(|e| self.io_error("folder", &shown, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `file_type` does not follow symlinks, so a link is reported as one and never looked through.
            let file_type = entry.file_type().map_err(|e| self.io_error("folder", &shown, e))?;
            let (kind, bytes) = if file_type.is_symlink() {
                ("symlink", 0)
            } else if file_type.is_dir() {
                ("dir", 0)
            } else {
                ("file", entry.metadata().map(|m| m.len()).unwrap_or(0))
            };
            entries.push((name, kind, bytes));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = entries.len() > MAX_LIST_ENTRIES;
        entries.truncate(MAX_LIST_ENTRIES);
        let entries: Vec<Value> =
            entries.into_iter().map(|(name, kind, bytes)| json!({ "name": name, "kind": kind, "bytes": bytes })).collect();
        Ok(json!({ "path": shown, "entries": entries, "truncated": truncated }))
    }

    fn write(&self, args: &Value) -> Result<Value, ToolError> {
        let rel = self.file_path(args.get("path").and_then(Value::as_str).unwrap_or_default())?;
        let content = args.get("content").and_then(Value::as_str).unwrap_or_default();
        let overwrite = args.get("overwrite").and_then(Value::as_bool).unwrap_or(false);
        let shown = display_path(&rel);
        // The schema's maxLength counts characters; the limit is on bytes.
        if content.len() > MAX_FILE_BYTES {
            return Err(self.failed(format!(
                "the content for {shown} is {} bytes; files_write writes at most {MAX_FILE_BYTES} bytes (1 MiB)",
                content.len()
            )));
        }
        let root = self.open_root()?;
        // A clean, non-empty relative path ends in a normal component, so it has a file name.
        let name = rel.file_name().map(PathBuf::from).unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = if parent.as_os_str().is_empty() {
            root
        } else {
            let shown_parent = display_path(parent);
            // An existing symlink to outside makes create_dir_all report AlreadyExists; opening the folder next
            // is what decides, and refuses the escape.
            match root.create_dir_all(parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.io_error("folder", &shown_parent, e)),
            }
            root.open_dir(parent).map_err(|e| self.io_error("folder", &shown_parent, e))?
        };
        let existing = match dir.symlink_metadata(&name) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io_error("file", &shown, e)),
        };
        if let Some(meta) = &existing {
            if meta.is_dir() {
                return Err(self.failed(format!("{shown} is a folder; choose a file name inside it")));
            }
            // The rename below would replace a symlink rather than write through it, but a link that leads out
            // is refused all the same so that the model learns where the boundary is.
            if meta.file_type().is_symlink() {
                dir.metadata(&name).map_err(|e| self.io_error("file", &shown, e))?;
            }
            if !overwrite {
                return Err(self.failed(format!("{shown} exists; pass overwrite: true to replace it")));
            }
        }
        // Write a temporary file next to the target and rename it over, so a reader never sees half a file and a
        // crash leaves the old content. Without overwrite, a file created between the check above and the rename
        // is replaced; the folder is the user's own, so that race is accepted.
        let temp = temp_name();
        if let Err(e) = write_then_rename(&dir, &temp, &name, content.as_bytes()) {
            let _ = dir.remove_file(&temp);
            return Err(self.io_error("file", &shown, e));
        }
        Ok(json!({ "path": shown, "bytes": content.len(), "created": existing.is_none() }))
    }
}

impl Tool for FileTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    // The operations are short and bounded by MAX_FILE_BYTES, so they do not poll the context.
    fn call(&self, args: &Value, _cx: &CallContext) -> Result<Value, ToolError> {
        match self.op {
            FileOp::Read => self.read(args),
            FileOp::List => self.list(args),
            FileOp::Write => self.write(args),
        }
    }
}

/// Writes `content` to a new file `temp` in `dir`, flushes it to disk and renames it to `name` in the same folder.
fn write_then_rename(dir: &Dir, temp: &str, name: &Path, content: &[u8]) -> io::Result<()> {
    let mut file = dir.open_with(temp, OpenOptions::new().write(true).create_new(true))?;
    file.write_all(content)?;
    file.sync_all()?;
    dir.rename(temp, dir, name)
}

/// A clean relative path as the model should write it: `/`-separated on every platform.
fn display_path(path: &Path) -> String {
    path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A temporary name unlikely to collide with the user's files or another write in flight, and short enough for
/// any file system whatever the target's name.
fn temp_name() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!(".keel-write-{}-{nanos}.tmp", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::Toolbox;

    /// A files folder with a sibling `outside/secret.txt` that no call may reach.
    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        toolbox: Toolbox,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("files");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "secret").unwrap();
        let mut toolbox = Toolbox::new();
        for tool in file_tools(root.clone()) {
            toolbox.add(tool).unwrap();
        }
        Fixture { _dir: dir, root, outside, toolbox }
    }

    impl Fixture {
        fn call(&self, name: &str, args: Value) -> Result<Value, ToolError> {
            self.toolbox.call(name, &args, None, &|| false)
        }
    }

    fn assert_refused(result: Result<Value, ToolError>, needle: &str) {
        match result {
            Err(ToolError::Refused { reason, .. }) => assert!(reason.contains(needle), "reason {reason:?} lacks {needle:?}"),
            other => panic!("expected a refusal mentioning {needle:?}, got {other:?}"),
        }
    }

    fn assert_failed(result: Result<Value, ToolError>, needle: &str) {
        match result {
            Err(ToolError::Failed { message, .. }) => assert!(message.contains(needle), "message {message:?} lacks {needle:?}"),
            other => panic!("expected a failure mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn write_read_and_list_inside_the_folder() {
        let f = fixture();
        let written = f.call("files_write", json!({ "path": "notes/todo.txt", "content": "buy milk" })).unwrap();
        assert_eq!(written, json!({ "path": "notes/todo.txt", "bytes": 8, "created": true }));
        assert_eq!(std::fs::read_to_string(f.root.join("notes/todo.txt")).unwrap(), "buy milk");

        let read = f.call("files_read", json!({ "path": "./notes/todo.txt" })).unwrap();
        assert_eq!(read, json!({ "path": "notes/todo.txt", "content": "buy milk", "bytes": 8, "truncated": false }));

        let top = f.call("files_list", json!({})).unwrap();
        assert_eq!(top["path"], ".");
        assert_eq!(top["entries"], json!([{ "name": "notes", "kind": "dir", "bytes": 0 }]));
        f.call("files_write", json!({ "path": "notes/a.txt", "content": "é" })).unwrap();
        let notes = f.call("files_list", json!({ "path": "notes" })).unwrap();
        assert_eq!(
            notes["entries"],
            json!([{ "name": "a.txt", "kind": "file", "bytes": 2 }, { "name": "todo.txt", "kind": "file", "bytes": 8 }])
        );
        assert_eq!(notes["truncated"], false);
    }

    #[test]
    fn write_does_not_overwrite_by_default() {
        let f = fixture();
        f.call("files_write", json!({ "path": "a.txt", "content": "one" })).unwrap();
        assert_failed(f.call("files_write", json!({ "path": "a.txt", "content": "two" })), "overwrite: true");
        assert_eq!(std::fs::read_to_string(f.root.join("a.txt")).unwrap(), "one");
        let replaced = f.call("files_write", json!({ "path": "a.txt", "content": "two", "overwrite": true })).unwrap();
        assert_eq!(replaced["created"], false);
        assert_eq!(std::fs::read_to_string(f.root.join("a.txt")).unwrap(), "two");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&f.root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
    }

    #[test]
    fn parent_paths_are_refused() {
        let f = fixture();
        assert_refused(f.call("files_read", json!({ "path": "../outside/secret.txt" })), "..");
        assert_refused(f.call("files_write", json!({ "path": "notes/../../x.txt", "content": "x" })), "..");
        assert_refused(f.call("files_list", json!({ "path": ".." })), "..");
        assert!(!f.outside.parent().unwrap().join("x.txt").exists());
    }

    #[test]
    fn absolute_and_empty_paths_are_refused() {
        let f = fixture();
        assert_refused(f.call("files_read", json!({ "path": "/etc/passwd" })), "absolute paths are refused");
        let secret = f.outside.join("secret.txt");
        assert_refused(f.call("files_read", json!({ "path": secret.to_str().unwrap() })), "absolute");
        assert_refused(f.call("files_write", json!({ "path": "/tmp/keel-x.txt", "content": "x" })), "absolute");
        assert_refused(f.call("files_read", json!({ "path": " " })), "empty path");
        assert_refused(f.call("files_read", json!({ "path": "." })), "files folder itself");
        assert_refused(f.call("files_read", json!({ "path": "a\u{0}b" })), "NUL");
    }

    #[test]
    fn missing_and_binary_files_fail_with_their_names() {
        let f = fixture();
        assert_failed(f.call("files_read", json!({ "path": "nope.txt" })), "no file named nope.txt");
        std::fs::write(f.root.join("blob.bin"), [0xff, 0xfe, 0x00]).unwrap();
        assert_failed(f.call("files_read", json!({ "path": "blob.bin" })), "blob.bin is not UTF-8 text");
    }

    #[test]
    fn a_large_file_is_read_up_to_one_mib() {
        let f = fixture();
        std::fs::write(f.root.join("big.txt"), "a".repeat(MAX_FILE_BYTES + 10)).unwrap();
        let read = f.call("files_read", json!({ "path": "big.txt" })).unwrap();
        assert_eq!(read["truncated"], true);
        assert_eq!(read["bytes"], MAX_FILE_BYTES + 10);
        assert_eq!(read["content"].as_str().unwrap().len(), MAX_FILE_BYTES);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_to_a_file_outside_is_refused() {
        let f = fixture();
        let secret = f.outside.join("secret.txt");
        std::os::unix::fs::symlink(&secret, f.root.join("absolute-link.txt")).unwrap();
        std::os::unix::fs::symlink("../outside/secret.txt", f.root.join("relative-link.txt")).unwrap();
        for path in ["absolute-link.txt", "relative-link.txt"] {
            assert_refused(f.call("files_read", json!({ "path": path })), "outside the files folder");
            assert_refused(
                f.call("files_write", json!({ "path": path, "content": "pwned", "overwrite": true })),
                "outside the files folder",
            );
        }
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "secret");
        // Listing shows the links as links without following them.
        let listed = f.call("files_list", json!({})).unwrap();
        assert_eq!(listed["entries"][0], json!({ "name": "absolute-link.txt", "kind": "symlink", "bytes": 0 }));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_folder_outside_is_refused_for_read_write_and_list() {
        let f = fixture();
        std::os::unix::fs::symlink(&f.outside, f.root.join("out")).unwrap();
        assert_refused(f.call("files_read", json!({ "path": "out/secret.txt" })), "outside the files folder");
        assert_refused(f.call("files_write", json!({ "path": "out/new.txt", "content": "x" })), "outside the files folder");
        assert_refused(
            f.call("files_write", json!({ "path": "out/deeper/new.txt", "content": "x" })),
            "outside the files folder",
        );
        assert_refused(f.call("files_list", json!({ "path": "out" })), "outside the files folder");
        assert!(!f.outside.join("new.txt").exists());
        assert!(!f.outside.join("deeper").exists());
    }
}
