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
    assert_eq!(version, 4);
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

/// A newer Keel's database in rollback-journal mode (not WAL, as a future Keel might leave it): refused with not
/// one byte changed. Switching to WAL before reading the version rewrote the header (bytes 18 and 19: 1 for the
/// rollback journal, 2 for WAL) although the error said the file was left alone.
#[test]
fn a_newer_database_in_rollback_mode_is_refused_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.sqlite3");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE future (x); INSERT INTO future VALUES (1); PRAGMA user_version = 99;").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    // The oracle sees what it is meant to: the file is in rollback mode to begin with.
    assert_eq!((before[18], before[19]), (1, 1), "the fixture is not in rollback-journal mode");
    let err = Store::open(&path).err().unwrap();
    assert!(err.to_string().contains("newer Keel"), "{err}");
    let after = std::fs::read(&path).unwrap();
    assert!(after == before, "the refused database was changed (header bytes 18-19 now {:?})", &after[18..20]);
    assert!(!dir.path().join("keel.sqlite3-wal").exists(), "a WAL file was created beside the refused database");
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

/// A conversation keeps the backend its last turn asked for (NULL: the default), and a fork takes its own or
/// its parent's.
#[test]
fn a_conversation_keeps_the_backend_of_its_last_turn() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("keel.sqlite3")).unwrap();
    let backend = |id: i64| store.conversation(id).unwrap().0.backend;
    let (conversation, first_run) = store.begin_turn_with_event(None, "hello", Some("lab"), &|_| None).unwrap();
    assert_eq!(backend(conversation), Some("lab".to_string()));
    assert_eq!(store.list_conversations().unwrap()[0].backend.as_deref(), Some("lab"));

    let (fork, _) = store.begin_fork(first_run, "hello", None).unwrap();
    assert_eq!(backend(fork), Some("lab".to_string()), "a fork without a backend keeps its parent's");
    let (fork, _) = store.begin_fork(first_run, "hello", Some("cloud")).unwrap();
    assert_eq!(backend(fork), Some("cloud".to_string()));

    store.begin_turn_with_event(Some(conversation), "again", None, &|_| None).unwrap();
    assert_eq!(backend(conversation), None, "a turn on the default backend says so");
    drop(store);
    // It is on disk, not in the process.
    let store = Store::open(&dir.path().join("keel.sqlite3")).unwrap();
    assert_eq!(store.conversation(conversation).unwrap().0.backend, None);
    assert_eq!(store.conversation(fork).unwrap().0.backend.as_deref(), Some("cloud"));
}
