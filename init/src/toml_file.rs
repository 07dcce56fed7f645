//! Reading keel's optional TOML files (host settings, api.toml, syslog.toml): a missing
//! file is not an error, an unreadable one or invalid TOML is, naming the file (toml's
//! message names the key, line and column).

use serde::de::DeserializeOwned;
use std::path::Path;

/// Why a TOML file could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum TomlFileError {
    /// The file exists but could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has an unknown key (toml's message names key and line).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// toml's description, naming the key and position.
        message: String,
    },
}

/// The file's text, or None when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, TomlFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TomlFileError::Read { path: path.display().to_string(), source }),
    }
}

/// Decode `text`; `path` only names the file in the error.
pub fn decode<T: DeserializeOwned>(text: &str, path: &str) -> Result<T, TomlFileError> {
    toml::from_str(text).map_err(|e| TomlFileError::Invalid { path: path.into(), message: e.to_string().trim_end().to_string() })
}
