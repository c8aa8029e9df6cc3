//! Walks over objects guided by the list types of the kind's schema: the set of
//! fields an object sets, the fields that differ between two objects, the merge of
//! an applied configuration into a live object, and the removal of fields.
//!
//! Lists follow structured-merge-diff's list types: associative lists
//! (`x-kubernetes-list-type: map`) are keyed by their `listMapKey`s, set lists
//! (`set`) by their values, every other list is atomic and replaced whole. The keys
//! are the strategic merge keys of [`crate::patch::schema`], widened where
//! Kubernetes declares more than one `listMapKey`.

use serde_json::{Map, Value};

use super::path::PathElement;
use super::set::FieldSet;
use crate::patch::schema::{ListMerge, TypeSchema};

/// How a list is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListType {
    /// Replaced whole; a leaf of the field set.
    Atomic,
    /// A set of scalars.
    Set,
    /// Objects keyed by this field, and by a second one when given.
    Map(&'static str, Option<&'static str>),
}

/// What the walk knows about the value at a path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    list: ListType,
    schema: Option<&'static TypeSchema>,
    /// A map that is replaced whole (`x-kubernetes-map-type: atomic`).
    atomic_map: bool,
}

impl Kind {
    /// The kind of a whole object with this schema.
    pub(crate) fn root(schema: Option<&'static TypeSchema>) -> Self {
        Self {
            list: ListType::Atomic,
            schema,
            atomic_map: false,
        }
    }

    /// The kind of field `name` of this map, found at `path`.
    fn field(&self, name: &str, path: &[PathElement]) -> Self {
        let field = self.schema.and_then(|s| s.field(name));
        Self {
            list: field.map_or(ListType::Atomic, |f| list_type(f.list)),
            schema: field.and_then(|f| f.schema),
            // Label selectors (`+structType=atomic`) and a Service's selector
            // (`+mapType=atomic`) are replaced whole.
            atomic_map: name == "selector"
                && matches!(path, [PathElement::Field(spec)] if spec == "spec"),
        }
    }

    /// The kind of an element of this list.
    fn item(&self) -> Self {
        Self::root(self.schema)
    }
}

/// The list type of a strategic merge list; its merge key becomes the
/// `listMapKey`, widened where Kubernetes declares two.
fn list_type(merge: ListMerge) -> ListType {
    match merge {
        ListMerge::Atomic => ListType::Atomic,
        ListMerge::Set => ListType::Set,
        // ContainerPort and ServicePort: `+listMapKey=…Port +listMapKey=protocol`;
        // TopologySpreadConstraint: `topologyKey` and `whenUnsatisfiable`.
        ListMerge::ByKey(key @ ("containerPort" | "port")) => ListType::Map(key, Some("protocol")),
        ListMerge::ByKey(key @ "topologyKey") => ListType::Map(key, Some("whenUnsatisfiable")),
        ListMerge::ByKey(key) => ListType::Map(key, None),
    }
}

/// The key fields of an associative list.
type Keys = (&'static str, Option<&'static str>);

/// The path element of a list item, or `None` when it lacks a key field (only
/// `protocol` has a default, `TCP`, as in Kubernetes' schema).
fn item_key(keys: Keys, item: &Value) -> Option<PathElement> {
    let tcp = Value::from("TCP");
    let mut fields = Vec::new();
    for key in [Some(keys.0), keys.1].into_iter().flatten() {
        match item.get(key) {
            Some(v) if !v.is_null() => fields.push((key, v)),
            _ if key == "protocol" => fields.push((key, &tcp)),
            _ => return None,
        }
    }
    Some(PathElement::key(&fields))
}

/// The items of an associative list by key; `None` when a key is missing or
/// repeated (such a list is then handled as atomic).
fn keyed(keys: Keys, items: &[Value]) -> Option<Vec<(PathElement, &Value)>> {
    let mut out: Vec<(PathElement, &Value)> = Vec::with_capacity(items.len());
    for item in items {
        let key = item_key(keys, item)?;
        if out.iter().any(|(k, _)| *k == key) {
            return None;
        }
        out.push((key, item));
    }
    Some(out)
}

/// Adds the fields `value` (a map's fields) sets, below `path`.
pub(crate) fn object_fields(
    value: &Value,
    kind: Kind,
    path: &mut Vec<PathElement>,
    out: &mut FieldSet,
) {
    let Some(map) = value.as_object() else {
        return;
    };
    for (name, child) in map {
        if child.is_null() {
            continue;
        }
        let child_kind = kind.field(name, path);
        path.push(PathElement::Field(name.clone()));
        node(child, child_kind, path, out);
        path.pop();
    }
}

/// Adds the value at `path`: its leaves, and list items themselves.
fn node(value: &Value, kind: Kind, path: &mut Vec<PathElement>, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() && !kind.atomic_map => {
            object_fields(value, kind, path, out)
        }
        Value::Array(items) if !items.is_empty() => match kind.list {
            ListType::Set => {
                for item in items {
                    path.push(PathElement::value(item));
                    out.insert(path);
                    path.pop();
                }
            }
            ListType::Map(k1, k2) => match keyed((k1, k2), items) {
                Some(items) => {
                    for (key, item) in items {
                        path.push(key);
                        out.insert(path);
                        object_fields(item, kind.item(), path, out);
                        path.pop();
                    }
                }
                None => out.insert(path),
            },
            ListType::Atomic => out.insert(path),
        },
        _ => out.insert(path),
    }
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    /// Set now, absent before.
    pub added: FieldSet,
    /// Set in both, with different values.
    pub modified: FieldSet,
    /// Set before, absent now.
    pub removed: FieldSet,
}

/// Compares the maps `old` and `new` below `path`.
pub(crate) fn compare(
    old: Option<&Value>,
    new: Option<&Value>,
    kind: Kind,
    path: &mut Vec<PathElement>,
    diff: &mut Diff,
) {
    let old = old.filter(|v| !v.is_null());
    let new = new.filter(|v| !v.is_null());
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => node(n, kind, path, &mut diff.added),
        (Some(o), None) => {
            node(o, kind, path, &mut diff.removed);
            diff.removed.insert(path);
        }
        (Some(o), Some(n)) if o == n => {}
        (Some(Value::Object(o)), Some(Value::Object(n))) if !kind.atomic_map => {
            let mut names: Vec<&String> = o.keys().chain(n.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let child_kind = kind.field(name, path);
                path.push(PathElement::Field(name.clone()));
                compare(o.get(name), n.get(name), child_kind, path, diff);
                path.pop();
            }
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) => compare_lists(o, n, kind, path, diff),
        (Some(_), Some(_)) => diff.modified.insert(path),
    }
}

fn compare_lists(
    old: &[Value],
    new: &[Value],
    kind: Kind,
    path: &mut Vec<PathElement>,
    diff: &mut Diff,
) {
    match kind.list {
        ListType::Set => {
            for (items, other, out) in [(new, old, &mut diff.added), (old, new, &mut diff.removed)]
            {
                for item in items.iter().filter(|i| !other.contains(i)) {
                    path.push(PathElement::value(item));
                    out.insert(path);
                    path.pop();
                }
            }
        }
        ListType::Map(k1, k2) => {
            let (Some(o), Some(n)) = (keyed((k1, k2), old), keyed((k1, k2), new)) else {
                diff.modified.insert(path);
                return;
            };
            for (key, item) in &n {
                path.push(key.clone());
                match o.iter().find(|(k, _)| k == key) {
                    Some((_, before)) => {
                        compare(Some(before), Some(item), kind.item(), path, diff);
                    }
                    None => {
                        diff.added.insert(path);
                        object_fields(item, kind.item(), path, &mut diff.added);
                    }
                }
                path.pop();
            }
            for (key, item) in o.iter().filter(|(k, _)| !n.iter().any(|(nk, _)| nk == k)) {
                path.push(key.clone());
                diff.removed.insert(path);
                object_fields(item, kind.item(), path, &mut diff.removed);
                path.pop();
            }
        }
        ListType::Atomic => diff.modified.insert(path),
    }
}

/// Why an applied configuration cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// An element of an associative list lacks a key field.
    #[error("{path}: element {index} is missing key field(s) {keys}")]
    MissingKey {
        /// The list's path.
        path: String,
        /// The element's index.
        index: usize,
        /// The key fields.
        keys: String,
    },
    /// Two elements of an associative list or set have the same key.
    #[error("{path}: duplicate entries for key {key}")]
    Duplicate {
        /// The list's path.
        path: String,
        /// The key.
        key: String,
    },
}

/// Merges the applied configuration `config` into `live`, both maps: fields of the
/// configuration win, maps merge field by field, associative lists merge item by
/// item (new items are appended), sets take the union, other lists are replaced.
pub(crate) fn merge(
    live: &Value,
    config: &Value,
    kind: Kind,
    path: &mut Vec<PathElement>,
) -> Result<Value, MergeError> {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !kind.atomic_map => {
            let mut out = l.clone();
            for (name, value) in c {
                if value.is_null() {
                    continue;
                }
                let child_kind = kind.field(name, path);
                path.push(PathElement::Field(name.clone()));
                let merged = match l.get(name) {
                    Some(before) => merge(before, value, child_kind, path)?,
                    None => merge(&Value::Null, value, child_kind, path)?,
                };
                path.pop();
                out.insert(name.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (_, Value::Array(c)) => merge_list(live.as_array(), c, kind, path),
        (_, Value::Object(_)) if !kind.atomic_map => {
            merge(&Value::Object(Map::new()), config, kind, path)
        }
        _ => Ok(config.clone()),
    }
}

fn merge_list(
    live: Option<&Vec<Value>>,
    config: &[Value],
    kind: Kind,
    path: &mut Vec<PathElement>,
) -> Result<Value, MergeError> {
    let at = || super::path::path_string(path);
    match kind.list {
        ListType::Atomic => Ok(Value::Array(config.to_vec())),
        ListType::Set => {
            let mut out = live.cloned().unwrap_or_default();
            for (i, item) in config.iter().enumerate() {
                if config[..i].contains(item) {
                    return Err(MergeError::Duplicate {
                        path: at(),
                        key: item.to_string(),
                    });
                }
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(Value::Array(out))
        }
        ListType::Map(k1, k2) => {
            let mut config_keys: Vec<PathElement> = Vec::with_capacity(config.len());
            for (index, item) in config.iter().enumerate() {
                let key = item_key((k1, k2), item).ok_or_else(|| MergeError::MissingKey {
                    path: at(),
                    index,
                    keys: [Some(k1), k2]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
                if config_keys.contains(&key) {
                    return Err(MergeError::Duplicate {
                        path: at(),
                        key: key.to_string(),
                    });
                }
                config_keys.push(key);
            }
            // A live list that is not keyed properly is replaced.
            let live_items = live.and_then(|l| keyed((k1, k2), l)).unwrap_or_default();
            let mut out: Vec<Value> = live_items.iter().map(|(_, v)| (*v).clone()).collect();
            for (key, item) in config_keys.into_iter().zip(config) {
                path.push(key.clone());
                match live_items.iter().position(|(k, _)| *k == key) {
                    Some(i) => out[i] = merge(live_items[i].1, item, kind.item(), path)?,
                    None => out.push(merge(&Value::Null, item, kind.item(), path)?),
                }
                path.pop();
            }
            Ok(Value::Array(out))
        }
    }
}

/// Removes the members of `set` from the map `value`. Maps and lists emptied by
/// the removal are removed too.
pub(crate) fn remove(value: &mut Value, set: &FieldSet, kind: Kind, path: &mut Vec<PathElement>) {
    match value {
        Value::Object(map) => {
            for element in set.members() {
                if let PathElement::Field(name) = element {
                    map.remove(name);
                }
            }
            for (element, child) in set.children() {
                let PathElement::Field(name) = element else {
                    continue;
                };
                let child_kind = kind.field(name, path);
                path.push(element.clone());
                if let Some(v) = map.get_mut(name) {
                    remove(v, child, child_kind, path);
                    if emptied(v) {
                        map.remove(name);
                    }
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let element_of = |item: &Value| match kind.list {
                ListType::Set => Some(PathElement::value(item)),
                ListType::Map(k1, k2) => item_key((k1, k2), item),
                ListType::Atomic => None,
            };
            items.retain(|item| element_of(item).is_none_or(|e| !set.members().any(|m| *m == e)));
            for item in items.iter_mut() {
                if let Some(element) = element_of(item)
                    && let Some(child) = set.child(&element)
                {
                    path.push(element);
                    remove(item, child, kind.item(), path);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

fn emptied(value: &Value) -> bool {
    match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}
