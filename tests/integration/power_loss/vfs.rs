//! A fault-injecting SQLite VFS that simulates power cuts, as SQLite's own crash tests do (`src/test6.c`).
//!
//! Registered as the process's default VFS, it wraps the platform's (`unix`) and passes every call through.
//! Once armed on a folder, it also keeps, for each SQLite file under it (database, WAL, journal; not the
//! `-shm` index, which SQLite rebuilds), the writes and truncations made since that file's last `xSync`, with
//! the bytes they replaced. At the drawn operation (the n-th write, truncate or sync under the folder) the power
//! goes: that operation fails with an I/O error, as does every later write, truncate, sync or delete there, so
//! the Keel that was running stops where it stood. Once every connection to those files is closed,
//! [`power_off`] rewinds each file to what it last synced and then replays the writes made since, each one,
//! drawn from the seed, written whole, lost, torn (some of its 512-byte pieces written, the rest not) or trashed
//! (some pieces overwritten with noise). A write only ever touches its own bytes, so this never damages data a
//! sync covered: the platform's VFS promises as much (`SQLITE_IOCAP_POWERSAFE_OVERWRITE`).
//!
//! Directory entries are not simulated: a file created or deleted is taken to stay so.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use rusqlite::ffi;

/// What one power cut did to the writes that were not yet synced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    /// Writes, truncations and syncs counted under the folder before the cut.
    pub operations: u64,
    pub kept: u32,
    pub lost: u32,
    pub torn: u32,
    pub trashed: u32,
}

enum Op {
    Write { offset: u64, len_before: u64, old: Vec<u8>, new: Vec<u8> },
    Truncate { size: u64, len_before: u64, old_tail: Vec<u8> },
}

#[derive(Default)]
struct State {
    root: Option<PathBuf>,
    operations: u64,
    cut_at: Option<u64>,
    dead: bool,
    /// Per tracked file: what changed since its last sync, oldest first.
    unsynced: HashMap<String, Vec<Op>>,
    /// Open handles per tracked file: the rewind waits until there are none.
    open: HashMap<String, u32>,
    /// An I/O fault without a power cut: from this operation on, until [`disarm`], writes fail with this code.
    fault: Option<(u64, c_int)>,
    /// Operations the fault failed.
    failed: u64,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner())
}

static REAL: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

#[repr(C)]
struct CutFile {
    /// First, as SQLite requires: its `pMethods` points at [`METHODS`].
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// The file's path when it is tracked (under the armed folder, not `-shm`).
    tracked: *mut String,
}

/// Makes this VFS the process's default (once; later calls do nothing). Nothing is tracked until [`arm`].
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| unsafe {
        let real = ffi::sqlite3_vfs_find(std::ptr::null());
        assert!(!real.is_null(), "SQLite has no default VFS");
        REAL.store(real, Ordering::SeqCst);
        let mut vfs: ffi::sqlite3_vfs = std::ptr::read(real);
        vfs.szOsFile = std::mem::size_of::<CutFile>() as c_int;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = c"keel-power-cut".as_ptr();
        vfs.xOpen = Some(x_open);
        vfs.xDelete = Some(x_delete);
        let vfs = Box::leak(Box::new(vfs));
        assert_eq!(ffi::sqlite3_vfs_register(vfs, 1), ffi::SQLITE_OK);
    });
}

/// Tracks the SQLite files under `root`, and cuts the power at its `cut_at`-th write, truncate or sync there
/// (`None`: never on its own; [`power_off`] can still cut at the end).
pub fn arm(root: &Path, cut_at: Option<u64>) {
    let mut s = state();
    *s = State { root: Some(root.to_owned()), cut_at, open: std::mem::take(&mut s.open), ..State::default() };
}

/// Stops tracking without a cut: the files stay as they are.
pub fn disarm() {
    let mut s = state();
    *s = State { open: std::mem::take(&mut s.open), ..State::default() };
}

/// The power goes now: every later write, truncate, sync or delete under the folder fails, until [`power_off`].
pub fn arm_cut_now() {
    state().dead = true;
}

/// From the `at`-th write, truncate or sync under the folder on, the disk fails without losing power: with
/// `SQLITE_FULL` every write fails (a full disk: syncs and truncations still work); with `SQLITE_IOERR` every
/// write, truncate and sync does. Nothing reaches the files until [`disarm`].
pub fn fail_from(at: u64, code: c_int) {
    state().fault = Some((at, code));
}

/// Operations the fault of [`fail_from`] failed.
pub fn failed() -> u64 {
    state().failed
}

/// Whether the power went (the drawn operation was reached).
pub fn cut_happened() -> bool {
    state().dead
}

/// Writes, truncations and syncs counted under the folder since [`arm`].
pub fn operations() -> u64 {
    state().operations
}

/// The power goes now (if it has not already) and the unsynced writes meet the fates drawn from `seed`. Every
/// connection to the tracked files must be closed first; afterwards nothing is tracked.
pub fn power_off(seed: u64) -> Result<CutReport, String> {
    let mut s = state();
    s.dead = true;
    let open: Vec<_> = s.open.iter().filter(|(_, n)| **n > 0).map(|(p, n)| format!("{p} ({n})")).collect();
    if !open.is_empty() {
        return Err(format!("files still open at the power cut: {}", open.join(", ")));
    }
    let mut report = CutReport { operations: s.operations, ..CutReport::default() };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut paths: Vec<_> = s.unsynced.keys().cloned().collect();
    paths.sort();
    for path in paths {
        let ops = &s.unsynced[&path];
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(|e| format!("{path}: {e}"))?;
        // Back to what the last sync covered …
        for op in ops.iter().rev() {
            match op {
                Op::Write { offset, len_before, old, .. } => {
                    write_at(&mut file, *offset, old)?;
                    file.set_len(*len_before).map_err(|e| e.to_string())?;
                }
                Op::Truncate { size, len_before, old_tail } => {
                    file.set_len(*len_before).map_err(|e| e.to_string())?;
                    write_at(&mut file, *size, old_tail)?;
                }
            }
        }
        // … then what came after, each change written, lost, torn or trashed.
        for op in ops {
            match op {
                Op::Write { offset, new, .. } => match rng.below(4) {
                    0 | 1 => {
                        write_at(&mut file, *offset, new)?;
                        report.kept += 1;
                    }
                    2 => report.lost += 1,
                    _ => {
                        let trash = rng.below(2) == 0;
                        for (start, end) in pieces(*offset, new.len() as u64) {
                            match rng.below(3) {
                                0 => write_at(&mut file, start, &new[(start - offset) as usize..(end - offset) as usize])?,
                                1 if trash => {
                                    let noise: Vec<u8> = (start..end).map(|_| rng.next() as u8).collect();
                                    write_at(&mut file, start, &noise)?;
                                }
                                _ => {}
                            }
                        }
                        if trash {
                            report.trashed += 1
                        } else {
                            report.torn += 1
                        }
                    }
                },
                Op::Truncate { size, .. } => {
                    if rng.below(2) == 0 {
                        file.set_len(*size).map_err(|e| e.to_string())?;
                        report.kept += 1;
                    } else {
                        report.lost += 1;
                    }
                }
            }
        }
        file.sync_all().map_err(|e| e.to_string())?;
    }
    let open = std::mem::take(&mut s.open);
    *s = State { open, ..State::default() };
    Ok(report)
}

/// The 512-byte pieces of `[offset, offset + len)`, cut at absolute multiples of 512.
fn pieces(offset: u64, len: u64) -> Vec<(u64, u64)> {
    let end = offset + len;
    let mut out = Vec::new();
    let mut at = offset;
    while at < end {
        let next = ((at / 512) + 1) * 512;
        out.push((at, next.min(end)));
        at = next.min(end);
    }
    out
}

fn write_at(file: &mut std::fs::File, offset: u64, bytes: &[u8]) -> Result<(), String> {
    file.seek(SeekFrom::Start(offset)).and_then(|_| file.write_all(bytes)).map_err(|e| e.to_string())
}

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Write,
    Truncate,
    Sync,
}

/// Counts one operation on a tracked file; the error code it must fail with, when the power is (now) off or
/// the disk fails.
fn count(s: &mut State, kind: Kind) -> Option<c_int> {
    let power = match kind {
        Kind::Write => ffi::SQLITE_IOERR_WRITE,
        Kind::Truncate => ffi::SQLITE_IOERR_TRUNCATE,
        Kind::Sync => ffi::SQLITE_IOERR_FSYNC,
    };
    if s.dead {
        return Some(power);
    }
    s.operations += 1;
    if s.cut_at == Some(s.operations) {
        s.dead = true;
        return Some(power);
    }
    match s.fault {
        Some((at, code)) if s.operations >= at && (kind == Kind::Write || code != ffi::SQLITE_FULL) => {
            s.failed += 1;
            Some(if code == ffi::SQLITE_FULL { code } else { power })
        }
        _ => None,
    }
}

unsafe fn real_vfs() -> *mut ffi::sqlite3_vfs {
    REAL.load(Ordering::SeqCst)
}

unsafe fn real(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let real = (*(file as *mut CutFile)).real;
    (real, &*(*real).pMethods)
}

unsafe fn tracked<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a String> {
    (*(file as *mut CutFile)).tracked.as_ref()
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = real_vfs();
    let inner = ffi::sqlite3_malloc((*real_vfs).szOsFile) as *mut ffi::sqlite3_file;
    let me = file as *mut CutFile;
    (*me).base.pMethods = std::ptr::null();
    if inner.is_null() {
        return ffi::SQLITE_NOMEM;
    }
    std::ptr::write_bytes(inner as *mut u8, 0, (*real_vfs).szOsFile as usize);
    let rc = ((*real_vfs).xOpen.unwrap())(real_vfs, name, inner, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        if !(*inner).pMethods.is_null() {
            ((*(*inner).pMethods).xClose.unwrap())(inner);
        }
        ffi::sqlite3_free(inner as *mut c_void);
        return rc;
    }
    let path = (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned());
    let mut s = state();
    let tracked = match (path, &s.root) {
        (Some(p), Some(root)) if Path::new(&p).starts_with(root) && !p.ends_with("-shm") => {
            *s.open.entry(p.clone()).or_default() += 1;
            Box::into_raw(Box::new(p))
        }
        _ => std::ptr::null_mut(),
    };
    std::ptr::write(me, CutFile { base: ffi::sqlite3_file { pMethods: &METHODS }, real: inner, tracked });
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(_vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    if !name.is_null() {
        let path = CStr::from_ptr(name).to_string_lossy().into_owned();
        let mut s = state();
        if s.root.as_ref().is_some_and(|r| Path::new(&path).starts_with(r)) && !path.ends_with("-shm") {
            if s.dead {
                return ffi::SQLITE_IOERR_DELETE;
            }
            // Whatever was pending for it goes with it.
            s.unsynced.remove(&path);
        }
    }
    let real_vfs = real_vfs();
    ((*real_vfs).xDelete.unwrap())(real_vfs, name, sync_dir)
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let me = file as *mut CutFile;
    let (inner, methods) = real(file);
    let rc = (methods.xClose.unwrap())(inner);
    ffi::sqlite3_free(inner as *mut c_void);
    if !(*me).tracked.is_null() {
        let path = Box::from_raw((*me).tracked);
        if let Some(n) = state().open.get_mut(path.as_str()) {
            *n = n.saturating_sub(1);
        }
        (*me).tracked = std::ptr::null_mut();
    }
    rc
}

unsafe extern "C" fn x_read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let (inner, methods) = real(file);
    (methods.xRead.unwrap())(inner, buf, amount, offset)
}

unsafe fn file_size(file: *mut ffi::sqlite3_file) -> u64 {
    let (inner, methods) = real(file);
    let mut size: i64 = 0;
    (methods.xFileSize.unwrap())(inner, &mut size);
    size.max(0) as u64
}

/// The bytes of `[from, to)` that the file holds now (shorter when it ends first).
unsafe fn read_now(file: *mut ffi::sqlite3_file, from: u64, to: u64) -> Vec<u8> {
    let len = file_size(file);
    let end = to.min(len);
    if end <= from {
        return Vec::new();
    }
    let mut buf = vec![0u8; (end - from) as usize];
    let (inner, methods) = real(file);
    (methods.xRead.unwrap())(inner, buf.as_mut_ptr() as *mut c_void, buf.len() as c_int, from as i64);
    buf
}

unsafe extern "C" fn x_write(file: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    let (inner, methods) = real(file);
    let Some(path) = tracked(file) else {
        return (methods.xWrite.unwrap())(inner, buf, amount, offset);
    };
    let mut s = state();
    if let Some(code) = count(&mut s, Kind::Write) {
        return code;
    }
    let offset_u = offset as u64;
    let new = std::slice::from_raw_parts(buf as *const u8, amount as usize).to_vec();
    let len_before = file_size(file);
    let old = read_now(file, offset_u, offset_u + amount as u64);
    let rc = (methods.xWrite.unwrap())(inner, buf, amount, offset);
    s.unsynced.entry(path.clone()).or_default().push(Op::Write { offset: offset_u, len_before, old, new });
    rc
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let (inner, methods) = real(file);
    let Some(path) = tracked(file) else {
        return (methods.xTruncate.unwrap())(inner, size);
    };
    let mut s = state();
    if let Some(code) = count(&mut s, Kind::Truncate) {
        return code;
    }
    let len_before = file_size(file);
    let old_tail = read_now(file, size as u64, len_before);
    let rc = (methods.xTruncate.unwrap())(inner, size);
    s.unsynced.entry(path.clone()).or_default().push(Op::Truncate { size: size as u64, len_before, old_tail });
    rc
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let (inner, methods) = real(file);
    let Some(path) = tracked(file) else {
        return (methods.xSync.unwrap())(inner, flags);
    };
    let mut s = state();
    if let Some(code) = count(&mut s, Kind::Sync) {
        return code;
    }
    let rc = (methods.xSync.unwrap())(inner, flags);
    if rc == ffi::SQLITE_OK {
        s.unsynced.remove(path.as_str());
    }
    rc
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let (inner, methods) = real(file);
    (methods.xFileSize.unwrap())(inner, size)
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (inner, methods) = real(file);
    (methods.xLock.unwrap())(inner, level)
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (inner, methods) = real(file);
    (methods.xUnlock.unwrap())(inner, level)
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let (inner, methods) = real(file);
    (methods.xCheckReservedLock.unwrap())(inner, out)
}

unsafe extern "C" fn x_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    let (inner, methods) = real(file);
    (methods.xFileControl.unwrap())(inner, op, arg)
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (inner, methods) = real(file);
    (methods.xSectorSize.unwrap())(inner)
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (inner, methods) = real(file);
    (methods.xDeviceCharacteristics.unwrap())(inner)
}

unsafe extern "C" fn x_shm_map(file: *mut ffi::sqlite3_file, page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int {
    let (inner, methods) = real(file);
    (methods.xShmMap.unwrap())(inner, page, size, extend, out)
}

unsafe extern "C" fn x_shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    let (inner, methods) = real(file);
    (methods.xShmLock.unwrap())(inner, offset, n, flags)
}

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    let (inner, methods) = real(file);
    (methods.xShmBarrier.unwrap())(inner)
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let (inner, methods) = real(file);
    (methods.xShmUnmap.unwrap())(inner, delete)
}

/// Version 2: no memory-mapped reads (`xFetch`), so every byte SQLite reads comes through `xRead`.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};
