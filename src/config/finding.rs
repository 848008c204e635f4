//! What every check reports: a `Finding` is a key path (`pool[1].backend[0].weight`)
//! and one message; `load.rs` turns it into `file:line:column: key: message`.
//!
//! Owns: `KeyPath`/`Seg`, `Finding`, `InvalidValue` (the error of every `FromStr` of a
//! config value, its text the message serde places at the value) and `resolve_path`
//! (a path in the file, relative to the file's folder).
//! Does not own: any check, or locating a key in the text (load.rs). A leaf: it
//! imports nothing else from `config`, so every check module can import it.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem a check found: where, and what is wrong.
pub(super) type Finding = (KeyPath, String);

/// Where a key path is in the file, as `file:line`, for a message that names another
/// place than its own (`route[0]` at `t.toml:9`). load.rs, which has the text, gives it.
pub(super) type Place<'a> = &'a dyn Fn(&KeyPath) -> String;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key path such as `pool[1].backend[0].weight`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn key(mut self, k: &str) -> KeyPath {
        self.0.push(Seg::Key(k.to_string()));
        self
    }
    pub fn index(mut self, i: usize) -> KeyPath {
        self.0.push(Seg::Index(i));
        self
    }
    pub fn root(k: &str) -> KeyPath {
        KeyPath::default().key(k)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A value of the file that does not parse: the message says what was written and
/// what is expected (`"10" is not ...`). Its text is the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(String);

impl InvalidValue {
    pub(super) fn new(message: impl Into<String>) -> InvalidValue {
        InvalidValue(message.into())
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

/// `p`, relative to the folder of the config file unless absolute.
pub(super) fn resolve_path(source: &Path, p: &Path) -> PathBuf {
    match source.parent() {
        Some(dir) if !p.is_absolute() => dir.join(p),
        _ => p.to_path_buf(),
    }
}
