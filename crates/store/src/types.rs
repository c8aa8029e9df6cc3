//! The values the store hands out: key-value versions, list pages and watch events.

use bytes::Bytes;

/// A store revision. One global counter, bumped by exactly one on every successful
/// write (create, update or delete) and persisted, so it only ever grows, across
/// restarts too. A fresh store is at revision 1, like etcd.
pub type Revision = i64;

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, such as `/registry/pods/default/nginx`.
    pub key: String,
    /// The opaque value (the API server stores JSON).
    pub value: Bytes,
    /// The revision that created the key (reset when a deleted key is created again).
    pub create_revision: Revision,
    /// The revision of the last write to the key: the object's `resourceVersion`.
    pub mod_revision: Revision,
}

/// How to read a range of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read the snapshot at this revision; `None` or `Some(0)` read the latest.
    /// A revision before the compacted one fails with
    /// [`StoreError::Compacted`](crate::StoreError::Compacted).
    pub revision: Option<Revision>,
    /// Return at most this many items (`None` or `Some(0)`: no limit).
    pub limit: Option<usize>,
    /// Start after this key (the last key of the previous page).
    pub continue_after: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// The items, in key order.
    pub items: Vec<KeyValue>,
    /// The store revision the list was served at; pass it back as
    /// [`ListOptions::revision`] to read the next page from the same snapshot.
    pub revision: Revision,
    /// How many more items match after this page (0 when this is the last page).
    pub remaining: u64,
}

impl ListResult {
    /// Whether more items follow this page.
    pub fn more(&self) -> bool {
        self.remaining > 0
    }
}

/// What a delete removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The key's last version before the delete.
    pub prev_kv: KeyValue,
    /// The revision of the delete.
    pub revision: Revision,
}

/// The kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was created (Kubernetes `ADDED`).
    Create,
    /// The key was overwritten (Kubernetes `MODIFIED`).
    Update,
    /// The key was deleted (Kubernetes `DELETED`).
    Delete,
}

/// One change, as a watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The kind of change.
    pub kind: EventKind,
    /// The key's new version. For a delete, like etcd: the key, an empty value,
    /// `create_revision` 0 and `mod_revision` the delete's revision.
    pub kv: KeyValue,
    /// The key's version before the change: set for updates and deletes.
    pub prev_kv: Option<KeyValue>,
    /// The revision of the change (equal to `kv.mod_revision`).
    pub revision: Revision,
}

/// The smallest key greater than every key that starts with `prefix`, or `None`
/// when there is none (the empty prefix, or one made only of `char::MAX`).
///
/// Keys are compared as UTF-8 bytes, which orders them by code point, so bumping the
/// last code point gives the exclusive end of the range (etcd's `prefixEnd` does the
/// same on bytes).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut code = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&code) {
            code = 0xE000;
        }
        if let Some(next) = char::from_u32(code) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bumps_the_last_char() {
        assert_eq!(
            prefix_end("/registry/pods/").as_deref(),
            Some("/registry/pods0")
        );
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }
}
