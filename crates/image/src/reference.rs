//! Image references (`[registry/]repository[:tag][@digest]`), parsed and normalised the
//! way Docker, containerd and podman do (the distribution project's grammar): a name
//! without a registry is on `docker.io`, a one-part Docker Hub name is under
//! `library/`, and a reference with neither tag nor digest means `:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry of names that carry none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag of references that carry neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository name (registry included) the grammar allows.
pub const MAX_NAME_LEN: usize = 255;

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The string is empty.
    #[error("image reference is empty")]
    Empty,
    /// The repository has upper-case letters.
    #[error("image reference {0:?}: repository names must be lowercase")]
    Uppercase(String),
    /// A path component breaks the grammar.
    #[error(
        "image reference {reference:?}: {component:?} is not a valid repository path component (lowercase letters and digits, separated by '.', '_', '__' or '-')"
    )]
    PathComponent {
        /// The reference.
        reference: String,
        /// The offending component.
        component: String,
    },
    /// The registry host or port is malformed.
    #[error("image reference {reference:?}: {registry:?} is not a valid registry host[:port]")]
    Registry {
        /// The reference.
        reference: String,
        /// The registry part.
        registry: String,
    },
    /// The tag is malformed.
    #[error(
        "image reference {reference:?}: tag {tag:?} is invalid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
    )]
    Tag {
        /// The reference.
        reference: String,
        /// The tag.
        tag: String,
    },
    /// The digest is malformed.
    #[error("image reference {reference:?}")]
    Digest {
        /// The reference.
        reference: String,
        /// The digest error.
        #[source]
        source: DigestError,
    },
    /// The name is too long.
    #[error("image reference {0:?}: the repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
}

impl Reference {
    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given (see [`Reference::tag_or_default`]).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The tag, or `latest` when the reference has neither tag nor digest.
    pub fn tag_or_default(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some(DEFAULT_TAG),
            (None, Some(_)) => None,
        }
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image under another tag (the digest is dropped).
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        let text = format!("{}:{tag}", self.name());
        if !valid_tag(tag) {
            return Err(ReferenceError::Tag {
                reference: text,
                tag: tag.to_string(),
            });
        }
        Ok(Self {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest.parse().map_err(|source| ReferenceError::Digest {
                    reference: text.to_string(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(colon) => {
                let at = last_slash + colon;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::Tag {
                reference: text.to_string(),
                tag: tag.to_string(),
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(text.to_string()));
        }
        let (registry, repository) = split_registry(name);
        if !valid_registry(registry) {
            return Err(ReferenceError::Registry {
                reference: text.to_string(),
                registry: registry.to_string(),
            });
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(text.to_string()));
        }
        for component in repository.split('/') {
            if !valid_path_component(component) {
                return Err(ReferenceError::PathComponent {
                    reference: text.to_string(),
                    component: component.to_string(),
                });
            }
        }
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        Ok(Self {
            registry: registry.to_string(),
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

impl fmt::Display for Reference {
    /// The canonical form: `docker.io/library/busybox:latest`, with the default tag
    /// filled in and the digest (if any) appended.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = self.tag_or_default() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits off the registry: the first component is one if it has a '.' or ':' or is
/// `localhost` (Docker's rule); otherwise the name is on the default registry.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || registry.starts_with('[') => {
            (host, Some(port))
        }
        _ => (registry, None),
    };
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return false;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Reference {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(
            parse("busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            parse("library/busybox:1.36").to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(parse("user/app").to_string(), "docker.io/user/app:latest");
        assert_eq!(parse("index.docker.io/busybox").registry(), "docker.io");
    }

    #[test]
    fn registries_ports_tags_and_digests_are_told_apart() {
        let r = parse("localhost:5000/team/app:v1.2");
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1.2"));

        let r = parse("127.0.0.1:5000/app");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.tag_or_default(), Some("latest"));

        let digest = Digest::of(b"x");
        let r = parse(&format!("quay.io/org/app@{digest}"));
        assert_eq!(r.digest(), Some(&digest));
        assert_eq!(r.tag_or_default(), None);
        assert_eq!(r.to_string(), format!("quay.io/org/app@{digest}"));

        let r = parse(&format!("localhost/busybox:latest@{digest}"));
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.tag(), Some("latest"));

        assert_eq!(parse("[::1]:5000/app").registry(), "[::1]:5000");
        assert_eq!(
            parse("my-registry.example.com/a__b/c-d/e.f").repository(),
            "a__b/c-d/e.f"
        );
    }

    #[test]
    fn malformed_references_name_the_problem() {
        assert_eq!("".parse::<Reference>(), Err(ReferenceError::Empty));
        assert!(matches!(
            "BusyBox".parse::<Reference>(),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            "busybox:-bad".parse::<Reference>(),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            "app//x".parse::<Reference>(),
            Err(ReferenceError::PathComponent { .. })
        ));
        assert!(matches!(
            "a..b/x".parse::<Reference>(),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            "localhost:99999/x".parse::<Reference>(),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            "app@sha256:nothex".parse::<Reference>(),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            "x/_leading".parse::<Reference>(),
            Err(ReferenceError::PathComponent { .. })
        ));
        let long = format!("example.com/{}", "a".repeat(250));
        assert!(matches!(
            long.parse::<Reference>(),
            Err(ReferenceError::TooLong(_))
        ));
        let tag = "t".repeat(129);
        assert!(matches!(
            format!("app:{tag}").parse::<Reference>(),
            Err(ReferenceError::Tag { .. })
        ));
    }

    #[test]
    fn retagging_keeps_the_name() {
        let r = parse("localhost/busybox:latest").with_tag("v2").unwrap();
        assert_eq!(r.to_string(), "localhost/busybox:v2");
        assert!(parse("busybox").with_tag("bad tag").is_err());
    }
}
