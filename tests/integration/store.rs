//! The SQLite store: schema, durability settings, and a damaged database reported, not crashed on.

use keel::store::Store;
use keel::{App, ErrorKind, OpenOptions};

#[test]
fn a_new_store_is_migrated_and_in_wal_mode_with_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.sqlite3");
    drop(Store::open(&path).unwrap());
    // Opening again applies nothing twice.
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 3);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tables, ["backends", "conversations", "documents", "memory_items", "memory_meta", "memory_uses", "messages", "run_events", "runs", "settings"]);
}

#[test]
fn a_database_from_a_newer_keel_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.sqlite3");
    drop(Store::open(&path).unwrap());
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = Store::open(&path).err().unwrap();
    assert!(err.to_string().contains("newer Keel"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keel.sqlite3"), vec![0x5a; 8192]).unwrap();
    let options = OpenOptions { home: dir.path().to_owned(), models_dir: dir.path().join("models") };
    let err = App::open(options).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Store, "{err:?}");
    assert!(err.message.contains("not a Keel database"), "{}", err.message);
    assert!(err.hint.unwrap().contains("move the damaged keel.sqlite3 aside"));
    // Nothing was overwritten.
    assert_eq!(std::fs::read(dir.path().join("keel.sqlite3")).unwrap(), vec![0x5a; 8192]);
}
