//! What an I/O error means for the user: a full disk, or a folder that cannot take writes.

const EACCES: i32 = 13;
const ENOSPC: i32 = 28;
const EROFS: i32 = 30;

/// The disk is full (`ENOSPC`).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(ENOSPC)
}

/// The folder cannot take writes: read-only, no permission, or full.
pub fn is_unwritable(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EACCES | ENOSPC | EROFS))
}
