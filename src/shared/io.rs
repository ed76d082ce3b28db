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

/// Hands the heap's freed pages back to the system (glibc keeps them otherwise): called after a model load, whose
/// file reading and conversion free tens of megabytes that would stay resident for the life of the process.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: a glibc function without preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}
