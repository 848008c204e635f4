//! Reading a config file and reporting every problem as `file:line:column: key: message`.
//!
//! Owns: the error types, turning serde/TOML errors and semantic findings into
//! located messages (serde's wording put in TOML's words by `words.rs`: "expected a
//! whole number", "did you mean"). A semantic finding is located by walking the
//! spanned TOML document along its key path.
//! Does not own: the key paths and findings themselves (finding.rs) or the checks
//! (validate.rs and the check modules it calls).

mod words;

use super::Config;
use super::finding::{KeyPath, Seg};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// The key path of a serde error.
fn key_path_of(p: &serde_path_to_error::Path) -> KeyPath {
    use serde_path_to_error::Segment;
    let segs = p
        .iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect();
    KeyPath(segs)
}

/// One located problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The key path the problem is about; empty for plain syntax errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// All located problems (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(p) => p,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, source } => {
                write!(f, "{}: cannot read config file: {source}", file.display())
            }
            ConfigError::Invalid(problems) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Invalid(_) => None,
        }
    }
}

impl ConfigError {
    /// Every problem on one line, for a log entry (a reload failure is one line).
    pub fn one_line(&self) -> String {
        self.to_string().replace('\n', "; ")
    }
}

pub(super) fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path)
}

pub(super) fn parse_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let doc = Located { text, file: source };
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        ConfigError::Invalid(vec![doc.at_span(e.span(), String::new(), e.message())])
    })?;
    let file: super::schema::File = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path = key_path_of(e.path());
        let inner = e.into_inner();
        let msg = inner.message().to_string();
        if let Some(field) = unknown_field(&msg)
            && path.0.last() != Some(&Seg::Key(field.to_string()))
        {
            path = path.key(field);
        }
        let value = inner.span().and_then(|s| text.get(s));
        let msg = words::translate(&msg, value);
        let problem = match inner.span() {
            Some(span) => doc.at_span(Some(span), path.to_string(), &msg),
            None => doc.at_path(&path, &msg),
        };
        ConfigError::Invalid(vec![problem])
    })?;
    let place = |p: &KeyPath| doc.place(p);
    super::validate::validate(file, source, text, &place).map_err(|findings| {
        ConfigError::Invalid(findings.iter().map(|(p, m)| doc.at_path(p, m)).collect())
    })
}

fn unknown_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// The text of a config file, for turning spans and key paths into line:column.
pub(super) struct Located<'a> {
    pub text: &'a str,
    pub file: &'a Path,
}

impl Located<'_> {
    fn at_span(&self, span: Option<std::ops::Range<usize>>, key: String, msg: &str) -> Problem {
        let offset = span.map_or(0, |s| s.start).min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Problem {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message: msg.to_string(),
        }
    }

    /// Where `path` is, as `file:line`: for a message that points at another key.
    pub(super) fn place(&self, path: &KeyPath) -> String {
        let p = self.at_path(path, "");
        format!("{}:{}", p.file.display(), p.line)
    }

    /// Locates `path` in the document; a key that is absent is reported at the
    /// nearest enclosing table that is present.
    pub(super) fn at_path(&self, path: &KeyPath, msg: &str) -> Problem {
        let span = DeTable::parse(self.text)
            .ok()
            .and_then(|root| find_span(root.get_ref(), &path.0));
        self.at_span(span, path.to_string(), msg)
    }
}

fn find_span(table: &DeTable<'_>, path: &[Seg]) -> Option<std::ops::Range<usize>> {
    let Some(Seg::Key(first)) = path.first() else {
        return None;
    };
    let (key, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == first)?;
    let mut best = key.span();
    let mut cur: &DeValue<'_> = value.get_ref();
    let mut i = 1;
    while i < path.len() {
        match (&path[i], cur) {
            (Seg::Index(n), DeValue::Array(items)) => match items.get(*n) {
                Some(item) => {
                    best = item.span();
                    cur = item.get_ref();
                }
                None => break,
            },
            (Seg::Key(k), DeValue::Table(t)) => {
                match t.iter().find(|(tk, _)| tk.get_ref().as_ref() == k) {
                    Some((tk, tv)) => {
                        best = tk.span();
                        cur = tv.get_ref();
                    }
                    None => break,
                }
            }
            _ => break,
        }
        i += 1;
    }
    Some(best)
}
