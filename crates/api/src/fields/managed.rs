//! `metadata.managedFields`: who set which field. Writes record what they changed
//! for their manager (operation `Update`) and take those fields from the other
//! managers; server-side apply (operation `Apply`) merges an applied configuration,
//! refuses to change fields other managers own unless forced, and removes the
//! fields its manager applied before but applies no longer.

use serde_json::{Map, Value, json};

use super::set::{FieldSet, FieldsV1Error};
use super::walk::{self, Diff, Kind, MergeError};
use super::{Shape, tracked};

/// `Apply` or `Update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write (create, update, patch).
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The field manager (`kubectl`).
    pub manager: String,
    /// How it wrote.
    pub operation: Operation,
    /// The API version it wrote in (`apps/v1`).
    pub api_version: String,
    /// The subresource it wrote through (`status`, `scale`), if any.
    pub subresource: Option<String>,
    /// When its set last changed (RFC 3339).
    pub time: Option<String>,
    /// The fields it owns.
    pub fields: FieldSet,
}

impl Entry {
    /// True when this entry belongs to `writer` writing with `operation`. Appliers
    /// are one manager whatever their API version, as in Kubernetes.
    fn is(&self, writer: &Writer, operation: Operation) -> bool {
        self.manager == writer.manager
            && self.operation == operation
            && self.subresource.as_deref() == writer.subresource
            && (operation == Operation::Apply || self.api_version == writer.api_version)
    }

    /// The manager as Kubernetes prints it in conflicts:
    /// `"kubectl" using apps/v1`, `"kubectl" with subresource "scale" using autoscaling/v1`.
    pub fn describe(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            text.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }

    fn to_value(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
        });
        if let Some(time) = &self.time {
            entry["time"] = json!(time);
        }
        entry["fieldsType"] = json!("FieldsV1");
        entry["fieldsV1"] = self.fields.to_fields_v1();
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }

    fn from_value(value: &Value) -> Result<Self, DecodeError> {
        let text = |name: &str| value[name].as_str().unwrap_or_default().to_string();
        let operation = match value["operation"].as_str() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            // `[{}]` is how clients clear managedFields (Kubernetes' documented way):
            // an entry owning nothing, dropped on the way out.
            None if value.as_object().is_some_and(|m| m.is_empty()) => Operation::Update,
            other => return Err(DecodeError::Operation(format!("{other:?}"))),
        };
        if let Some(kind) = value["fieldsType"].as_str().filter(|t| *t != "FieldsV1") {
            return Err(DecodeError::FieldsType(kind.to_string()));
        }
        let fields = match value.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v1) => FieldSet::from_fields_v1(v1)?,
        };
        Ok(Self {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            subresource: value["subresource"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            time: value["time"].as_str().map(str::to_string),
            fields,
        })
    }
}

/// `metadata.managedFields` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a list of objects.
    #[error("metadata.managedFields must be a list of objects")]
    Shape,
    /// An operation other than `Apply` or `Update`.
    #[error("metadata.managedFields: unsupported operation {0}")]
    Operation(String),
    /// A fieldsType other than `FieldsV1`.
    #[error("metadata.managedFields: unsupported fieldsType {0:?}")]
    FieldsType(String),
    /// A FieldsV1 value that does not parse.
    #[error("metadata.managedFields")]
    Fields(#[from] FieldsV1Error),
}

/// The entries of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedFields {
    /// The entries, in no particular order ([`ManagedFields::to_value`] sorts).
    pub entries: Vec<Entry>,
}

impl ManagedFields {
    /// Reads `metadata.managedFields` of `object`; absent or null is empty.
    pub fn of(object: &Value) -> Result<Self, DecodeError> {
        match &object["metadata"]["managedFields"] {
            Value::Null => Ok(Self::default()),
            Value::Array(items) => Ok(Self {
                entries: items
                    .iter()
                    .map(|item| {
                        if item.is_object() {
                            Entry::from_value(item)
                        } else {
                            Err(DecodeError::Shape)
                        }
                    })
                    .collect::<Result<_, _>>()?,
            }),
            _ => Err(DecodeError::Shape),
        }
    }

    /// The JSON list, sorted as Kubernetes sorts it (appliers first, then oldest
    /// first), without entries that own nothing.
    pub fn to_value(&self) -> Value {
        let mut entries: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .collect();
        entries.sort_by(|a, b| {
            (
                a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        Value::Array(entries.iter().map(|e| e.to_value()).collect())
    }

    /// Writes these entries into `object`'s metadata; without any, removes
    /// `managedFields` (Kubernetes omits an empty list).
    pub fn store_in(&self, object: &mut Value) {
        let value = self.to_value();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            if value.as_array().is_some_and(Vec::is_empty) {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), value);
            }
        }
    }

    /// Drops from the appliers' sets the fields `object` does not have: those of
    /// an applied configuration that admission dropped as unknown (under
    /// `fieldValidation=Warn` or `Ignore`). Appliers own only leaves and list items,
    /// which this keeps exactly.
    pub fn forget_absent(&mut self, object: &Value, shape: &Shape) {
        let present = fields_of(object, shape);
        for entry in self
            .entries
            .iter_mut()
            .filter(|e| e.operation == Operation::Apply)
        {
            entry.fields = entry.fields.intersection(&present);
        }
        self.drop_empty();
    }

    /// Keeps at most [`MAX_UPDATERS`] `Update` entries, as Kubernetes does: the
    /// oldest are folded, per API version, into an [`ANCIENT_CHANGES`] entry that
    /// takes the time of the newest update folded in.
    fn cap_updaters(&mut self) {
        let mut updaters: Vec<usize> = (0..self.entries.len())
            .filter(|i| self.entries[*i].operation == Operation::Update)
            .collect();
        if updaters.len() <= MAX_UPDATERS {
            return;
        }
        updaters.sort_by(|a, b| self.entries[*a].time.cmp(&self.entries[*b].time));
        let mut count = updaters.len();
        let mut first_of_version: Vec<(String, usize)> = Vec::new();
        let mut folded = Vec::new();
        for i in updaters {
            if count <= MAX_UPDATERS {
                break;
            }
            let version = self.entries[i].api_version.clone();
            match first_of_version.iter().find(|(v, _)| *v == version) {
                Some((_, bucket)) => {
                    let bucket = *bucket;
                    let entry = self.entries[i].clone();
                    let target = &mut self.entries[bucket];
                    target.manager = ANCIENT_CHANGES.into();
                    target.subresource = None;
                    target.fields = target.fields.union(&entry.fields);
                    target.time = entry.time;
                    folded.push(i);
                    count -= 1;
                }
                None => first_of_version.push((version, i)),
            }
        }
        let mut index = 0;
        self.entries.retain(|_| {
            index += 1;
            !folded.contains(&(index - 1))
        });
    }

    fn drop_empty(&mut self) {
        self.entries.retain(|e| !e.fields.is_empty());
    }
}

/// How many `Update` entries an object keeps (Kubernetes' default).
pub const MAX_UPDATERS: usize = 10;

/// The manager of the oldest updates folded together past [`MAX_UPDATERS`].
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// Who writes, and when.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The API version of the request (`apps/v1`).
    pub api_version: &'a str,
    /// The subresource written through, if any.
    pub subresource: Option<&'a str>,
    /// Now, RFC 3339.
    pub time: &'a str,
}

impl Writer<'_> {
    fn entry(&self, operation: Operation, fields: FieldSet) -> Entry {
        Entry {
            manager: self.manager.to_string(),
            operation,
            api_version: self.api_version.to_string(),
            subresource: self.subresource.map(str::to_string),
            time: Some(self.time.to_string()),
            fields,
        }
    }
}

fn diff(old: &Value, new: &Value, shape: &Shape) -> Diff {
    let mut diff = Diff::default();
    walk::compare(
        Some(&tracked(old, shape.scope)),
        Some(&tracked(new, shape.scope)),
        Kind::root(shape.schema),
        &mut Vec::new(),
        &mut diff,
    );
    diff
}

/// The fields `object` sets, as a manager of it would own them.
pub fn fields_of(object: &Value, shape: &Shape) -> FieldSet {
    let mut set = FieldSet::new();
    walk::object_fields(
        &tracked(object, shape.scope),
        Kind::root(shape.schema),
        &mut Vec::new(),
        &mut set,
    );
    set
}

/// Records an update (create, replace or patch) from `old` to `new` by `writer`:
/// the fields it added or changed become its own (operation `Update`) and are
/// taken from every other manager; removed fields leave every set. A create is an
/// update from `{}`.
pub fn record_update(
    old: &Value,
    new: &Value,
    mut managed: ManagedFields,
    writer: &Writer,
    shape: &Shape,
) -> ManagedFields {
    let diff = diff(old, new, shape);
    let changed = diff.added.union(&diff.modified);
    if changed.is_empty() && diff.removed.is_empty() {
        return managed;
    }
    for entry in managed.entries.iter_mut() {
        entry.fields = entry.fields.difference(&changed).difference(&diff.removed);
    }
    match managed
        .entries
        .iter_mut()
        .find(|e| e.is(writer, Operation::Update))
    {
        Some(mine) => {
            mine.fields = mine.fields.union(&changed).difference(&diff.removed);
            mine.time = Some(writer.time.to_string());
        }
        None => managed
            .entries
            .push(writer.entry(Operation::Update, changed)),
    }
    managed.drop_empty();
    managed.cap_updaters();
    managed
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager, as [`Entry::describe`] prints it.
    pub manager: String,
    /// The field (`.spec.replicas`).
    pub field: String,
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409 Conflict).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration cannot be merged (422).
    #[error("{0}")]
    Merge(#[from] MergeError),
}

/// Kubernetes' message: `Apply failed with 1 conflict: conflict with "m" using
/// apps/v1: .spec.replicas`, or for several, the fields grouped by manager.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for c in conflicts.iter().filter(|c| c.manager == manager) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The result of an apply: the merged object (managedFields not yet stored in it)
/// and the new entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The live object with the configuration merged in and the fields the
    /// manager no longer applies removed.
    pub object: Value,
    /// The managed fields after the apply.
    pub managed: ManagedFields,
}

/// The manager Kubernetes gives the fields of an object that had no managed fields
/// when it was first applied to.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Server-side apply of `config` (the request body, without managedFields) by
/// `writer` to `live` (`None` when the object does not exist yet). With `force`,
/// conflicting fields change owner instead of failing the apply.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    mut managed: ManagedFields,
    writer: &Writer,
    force: bool,
    shape: &Shape,
) -> Result<Applied, ApplyError> {
    let empty = Value::Object(Map::new());
    let live = live.unwrap_or(&empty);
    let kind = Kind::root(shape.schema);
    let mut merged = walk::merge(live, config, kind, &mut Vec::new())?;
    let applied = fields_of(config, shape);
    if managed.entries.is_empty() {
        let before = fields_of(live, shape);
        if !before.is_empty() {
            let mut entry = writer.entry(Operation::Update, before);
            entry.manager = BEFORE_FIRST_APPLY.into();
            entry.subresource = None;
            managed.entries.push(entry);
        }
    }
    let diff = diff(live, &merged, shape);
    let changed = diff.added.union(&diff.modified);
    let mut conflicts = Vec::new();
    for entry in managed
        .entries
        .iter()
        .filter(|e| !e.is(writer, Operation::Apply))
    {
        for path in entry.fields.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: entry.describe(),
                field: super::path::path_string(&path),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    let mut previous = FieldSet::new();
    let mut previous_time = None;
    let mut others = FieldSet::new();
    for entry in managed.entries.iter_mut() {
        if entry.is(writer, Operation::Apply) {
            previous = std::mem::take(&mut entry.fields);
            previous_time = entry.time.take();
        } else {
            entry.fields = entry.fields.difference(&changed).difference(&diff.removed);
            others = others.union(&entry.fields);
        }
    }
    managed.entries.retain(|e| !e.is(writer, Operation::Apply));
    let dropped = previous.difference(&applied).difference(&others);
    walk::remove(&mut merged, &dropped, kind, &mut Vec::new());
    let mut mine = writer.entry(Operation::Apply, applied.clone());
    // An apply that changes nothing keeps its time, so that it writes nothing.
    if previous == applied && changed.is_empty() && dropped.is_empty() {
        mine.time = previous_time;
    }
    managed.entries.push(mine);
    managed.drop_empty();
    Ok(Applied {
        object: merged,
        managed,
    })
}
