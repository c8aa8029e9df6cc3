//! Container identifiers: validated once, so no path built from one can escape its root.

use std::fmt;
use std::str::FromStr;

/// The longest container ID accepted (runc and containerd IDs are 64 hex characters).
pub const MAX_ID_LEN: usize = 128;

/// A container ID that is safe to use as a single path component.
///
/// Allowed: ASCII letters, digits, `_`, `+`, `-` and `.`, 1 to [`MAX_ID_LEN`] characters,
/// not `.` or `..`. This is runc's rule (`^[\w+-\.]+$`) with a length limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

/// Why a string is not a valid container ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// The ID is empty.
    #[error("container ID must not be empty")]
    Empty,
    /// The ID is longer than [`MAX_ID_LEN`].
    #[error("container ID is {len} characters long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// The length given.
        len: usize,
    },
    /// The ID is `.` or `..`.
    #[error("container ID {0:?} is a relative path component")]
    DotPath(String),
    /// The ID holds a character outside `[A-Za-z0-9_+.-]`.
    #[error(
        "container ID {id:?} contains {bad:?}; only letters, digits, '_', '+', '-' and '.' are allowed"
    )]
    BadCharacter {
        /// The ID given.
        id: String,
        /// The first offending character.
        bad: char,
    },
}

impl ContainerId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidId::Empty);
        }
        if id.len() > MAX_ID_LEN {
            return Err(InvalidId::TooLong { len: id.len() });
        }
        if id == "." || id == ".." {
            return Err(InvalidId::DotPath(id));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
        {
            return Err(InvalidId::BadCharacter { id, bad });
        }
        Ok(Self(id))
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_style_ids() {
        for ok in ["a", "web-1", "f00d.beef_+x", &"a".repeat(MAX_ID_LEN)] {
            assert_eq!(ContainerId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_ids_that_could_escape_a_directory() {
        assert_eq!(ContainerId::new(""), Err(InvalidId::Empty));
        assert!(matches!(ContainerId::new(".."), Err(InvalidId::DotPath(_))));
        assert!(matches!(ContainerId::new("."), Err(InvalidId::DotPath(_))));
        assert!(matches!(
            ContainerId::new("../etc"),
            Err(InvalidId::BadCharacter { bad: '/', .. })
        ));
        assert!(matches!(
            ContainerId::new("a b"),
            Err(InvalidId::BadCharacter { bad: ' ', .. })
        ));
        assert!(matches!(
            ContainerId::new("caf\u{e9}"),
            Err(InvalidId::BadCharacter { .. })
        ));
        assert_eq!(
            ContainerId::new("a".repeat(MAX_ID_LEN + 1)),
            Err(InvalidId::TooLong {
                len: MAX_ID_LEN + 1
            })
        );
    }
}
