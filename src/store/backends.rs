//! Remote backend profiles and app settings (the default backend). No secret is ever stored here: a profile's
//! API key lives in the OS keyring under the profile's name.

use rusqlite::{params, OptionalExtension};

use super::{now_ms, Store, StoreError};

/// A stored profile, as validated by the caller before it is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRow {
    pub name: String,
    pub base_url: String,
    pub model: String,
    pub timeout_secs: u32,
    pub max_retries: u32,
    pub context_window: u32,
    pub fallback: Vec<String>,
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<BackendRow> {
    let fallback: String = r.get(6)?;
    Ok(BackendRow {
        name: r.get(0)?,
        base_url: r.get(1)?,
        model: r.get(2)?,
        timeout_secs: r.get(3)?,
        max_retries: r.get(4)?,
        context_window: r.get(5)?,
        fallback: serde_json::from_str(&fallback).unwrap_or_default(),
    })
}

const COLUMNS: &str = "name, base_url, model, timeout_secs, max_retries, context_window, fallback";

impl Store {
    pub fn backends(&self) -> Result<Vec<BackendRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM backends ORDER BY name")).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], row).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn backend(&self, name: &str) -> Result<Option<BackendRow>, StoreError> {
        let conn = self.conn();
        conn.query_row(&format!("SELECT {COLUMNS} FROM backends WHERE name = ?1"), [name], row).optional().map_err(|e| self.err(e))
    }

    /// Adds the profile, or replaces the one of the same name.
    pub fn save_backend(&self, b: &BackendRow) -> Result<(), StoreError> {
        let now = now_ms();
        let fallback = serde_json::to_string(&b.fallback).expect("a list of strings serialises");
        self.conn()
            .execute(
                "INSERT INTO backends (name, base_url, model, timeout_secs, max_retries, context_window, fallback, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                 ON CONFLICT(name) DO UPDATE SET base_url = ?2, model = ?3, timeout_secs = ?4, max_retries = ?5,
                     context_window = ?6, fallback = ?7, updated_ms = ?8",
                params![b.name, b.base_url, b.model, b.timeout_secs, b.max_retries, b.context_window, fallback, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes the profile; false when there was none.
    pub fn remove_backend(&self, name: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute("DELETE FROM backends WHERE name = ?1", [name]).map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn().query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(|e| self.err(e))
    }

    pub fn set_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let conn = self.conn();
        match value {
            Some(v) => conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
                params![key, v],
            ),
            None => conn.execute("DELETE FROM settings WHERE key = ?1", [key]),
        }
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}
