//! Lexical normalisation of archive entry names into paths below the layer root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A path below the layer root made only of normal components. The empty path is
/// the root itself.
///
/// Absolute archive names are taken relative to the root (image-spec layer.md says
/// so), and `..` is resolved lexically; a name whose `..` would climb above the root
/// does not parse. Symlinks are not looked at here: the filesystem side resolves
/// every parent inside the root with `openat2(RESOLVE_IN_ROOT)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct RootedPath(PathBuf);

impl RootedPath {
    /// Normalises a raw archive name, or `None` when it escapes the root.
    pub(crate) fn parse(raw: &[u8]) -> Option<Self> {
        let mut components: Vec<&[u8]> = Vec::new();
        for component in raw.split(|b| *b == b'/') {
            match component {
                b"" | b"." => {}
                b".." => {
                    components.pop()?;
                }
                other => components.push(other),
            }
        }
        let mut path = PathBuf::new();
        for component in components {
            path.push(OsStr::from_bytes(component));
        }
        Some(Self(path))
    }

    /// True for the layer root itself.
    pub(crate) fn is_root(&self) -> bool {
        self.0.as_os_str().is_empty()
    }

    /// The path relative to the root; `.` for the root, so it can be handed to `*at` calls.
    pub(crate) fn as_relative(&self) -> &Path {
        if self.is_root() {
            Path::new(".")
        } else {
            &self.0
        }
    }

    /// Splits into the parent directory and the last component; `None` for the root.
    pub(crate) fn split_last(&self) -> Option<(RootedPath, &OsStr)> {
        let name = self.0.file_name()?;
        let parent = self.0.parent().map(Path::to_path_buf).unwrap_or_default();
        Some((RootedPath(parent), name))
    }

    /// This path with one more component. `name` must be a single normal component.
    pub(crate) fn join(&self, name: &OsStr) -> RootedPath {
        RootedPath(self.0.join(name))
    }

    /// Number of components.
    pub(crate) fn depth(&self) -> usize {
        self.0.components().count()
    }

    /// The first `n` components.
    pub(crate) fn prefix(&self, n: usize) -> RootedPath {
        RootedPath(self.0.components().take(n).collect())
    }

    /// The components in order.
    pub(crate) fn components(&self) -> impl Iterator<Item = &OsStr> {
        self.0.components().map(|c| c.as_os_str())
    }

    /// This path and each of its ancestors below the root, deepest first.
    pub(crate) fn self_and_ancestors(&self) -> impl Iterator<Item = &Path> {
        self.0.ancestors().filter(|p| !p.as_os_str().is_empty())
    }

    /// The path as a plain relative path (empty for the root).
    pub(crate) fn as_path(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::RootedPath;
    use std::path::Path;

    fn parsed(raw: &str) -> Option<String> {
        RootedPath::parse(raw.as_bytes()).map(|p| p.as_path().display().to_string())
    }

    #[test]
    fn normalises_relative_absolute_and_dotted_names() {
        assert_eq!(parsed("etc/hosts").as_deref(), Some("etc/hosts"));
        assert_eq!(parsed("/etc/hosts").as_deref(), Some("etc/hosts"));
        assert_eq!(parsed("./etc//./hosts/").as_deref(), Some("etc/hosts"));
        assert_eq!(parsed("a/../b").as_deref(), Some("b"));
        assert_eq!(parsed("./").as_deref(), Some(""));
        assert_eq!(parsed("/").as_deref(), Some(""));
    }

    #[test]
    fn rejects_names_that_climb_above_the_root() {
        for raw in [
            "..",
            "../x",
            "/../../x",
            "a/../../x",
            "./../x",
            "a/b/../../../x",
        ] {
            assert_eq!(parsed(raw), None, "{raw}");
        }
    }

    #[test]
    fn splits_and_joins() {
        let path = RootedPath::parse(b"a/b/c").expect("valid");
        let (parent, name) = path.split_last().expect("not root");
        assert_eq!(parent.as_path(), Path::new("a/b"));
        assert_eq!(name, "c");
        assert_eq!(parent.join(name), path);
        assert_eq!(path.depth(), 3);
        assert_eq!(path.prefix(1).as_path(), Path::new("a"));
        let ancestors: Vec<_> = path.self_and_ancestors().collect();
        assert_eq!(
            ancestors,
            [Path::new("a/b/c"), Path::new("a/b"), Path::new("a")]
        );
        assert!(
            RootedPath::parse(b"/")
                .expect("valid")
                .split_last()
                .is_none()
        );
        assert_eq!(RootedPath::default().as_relative(), Path::new("."));
    }
}
