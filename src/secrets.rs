//! API keys in the OS keyring (the Secret Service on Linux, through the `keyring` crate), and nowhere else.
//!
//! A key is stored under service `keel`, user `backend:<profile>`. It is read only to build a remote backend's
//! `Authorization` header. When no keyring service is reachable (no D-Bus session, no Secret Service running,
//! a locked keyring), the error says so and what to install or start; Keel never falls back to a file.

use crate::llm::remote::ApiKey;

const SERVICE: &str = "keel";

/// Why the keyring could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No keyring service answered (no D-Bus session bus, no Secret Service provider).
    #[error("no OS keyring is available to hold API keys ({detail})")]
    Unavailable { detail: String },
    /// The keyring is there but locked or refused access.
    #[error("the OS keyring is locked or refused access ({detail})")]
    Locked { detail: String },
    #[error("the OS keyring failed: {detail}")]
    Failed { detail: String },
}

impl KeyringError {
    pub fn hint(&self) -> String {
        match self {
            KeyringError::Unavailable { .. } => "Keel keeps API keys only in the OS keyring (the Secret Service), never in a file. Install and \
                 start one: on Debian/Ubuntu `apt install gnome-keyring dbus-user-session`, then log in to a desktop \
                 session (or, without one, run Keel inside `dbus-run-session` with `gnome-keyring-daemon --unlock \
                 --components=secrets`), and start Keel again"
                .into(),
            KeyringError::Locked { .. } => "unlock the keyring (log in to your desktop session, or run `gnome-keyring-daemon --unlock`) and try again".into(),
            KeyringError::Failed { .. } => "check that the Secret Service (gnome-keyring or KeePassXC) is running and working".into(),
        }
    }
}

fn classify(e: keyring::Error) -> KeyringError {
    // The platform error's text names the D-Bus problem; it never holds the secret.
    match e {
        keyring::Error::NoDefaultStore => {
            let detail = match keyring::Entry::store_status() {
                Err(inner) => inner.to_string(),
                Ok(()) => "no default credential store".into(),
            };
            KeyringError::Unavailable { detail }
        }
        keyring::Error::PlatformFailure(p) => KeyringError::Unavailable { detail: p.to_string() },
        keyring::Error::NoStorageAccess(p) => KeyringError::Locked { detail: p.to_string() },
        other => KeyringError::Failed { detail: other.to_string() },
    }
}

fn entry(profile: &str) -> Result<keyring::Entry, KeyringError> {
    keyring::Entry::new(SERVICE, &format!("backend:{profile}")).map_err(classify)
}

/// Stores (or replaces) the profile's key.
pub fn set_key(profile: &str, key: &ApiKey) -> Result<(), KeyringError> {
    entry(profile)?.set_password(key.expose()).map_err(classify)
}

/// The profile's key, or `None` when none is stored.
pub fn key(profile: &str) -> Result<Option<ApiKey>, KeyringError> {
    match entry(profile)?.get_password() {
        Ok(k) => Ok(Some(ApiKey::new(k))),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(classify(e)),
    }
}

/// Deletes the profile's key; false when there was none.
pub fn delete_key(profile: &str) -> Result<bool, KeyringError> {
    match entry(profile)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(classify(e)),
    }
}
