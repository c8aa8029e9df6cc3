//! The shape of the protobuf schema table: for each Kubernetes message the field
//! numbers Kubernetes' `generated.proto` gives its fields, and the JSON name, type and
//! cardinality of each. The table itself (`table.rs`) is generated.

/// What a field holds on the wire and how it reads as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A UTF-8 string.
    Str,
    /// Bytes, base64 in JSON.
    Bytes,
    /// A bool (varint).
    Bool,
    /// An int32 (varint, sign-extended when negative).
    I32,
    /// An int64 (varint).
    I64,
    /// A message: the index of its schema in the table.
    Msg(u16),
    /// `resource.Quantity`: `{string}`, a JSON string.
    Quantity,
    /// `intstr.IntOrString`: `{type, intVal, strVal}`, a JSON number or string.
    IntOrString,
    /// `meta.v1.Time`: `{seconds, nanos}`, RFC 3339 to the second.
    Time,
    /// `meta.v1.MicroTime`: `{seconds, nanos}`, RFC 3339 to the microsecond.
    MicroTime,
    /// `runtime.RawExtension` or `meta.v1.FieldsV1`: `{raw}`, embedded JSON.
    RawJson,
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    /// At most one (the last one on the wire wins).
    One,
    /// A list.
    Many,
    /// A map from string keys to values of the field's kind.
    Map,
    /// A message Go embeds inline (`json:",inline"`): its fields are the parent's.
    Inline,
}

/// One field: number, JSON name, kind, cardinality.
pub(crate) type Field = (u32, &'static str, Kind, Card);

/// One message (the table names each in a comment).
#[derive(Debug)]
pub(crate) struct Message {
    /// Its fields, in field-number order.
    pub fields: &'static [Field],
}

impl Message {
    /// The field numbered `number`.
    pub fn field(&self, number: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&number, |f| f.0)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

/// A top-level object a request body may carry: its `apiVersion` and `kind` and the
/// index of its message.
#[derive(Debug)]
pub(crate) struct Root {
    /// `apps/v1`, `v1`…
    pub api_version: &'static str,
    /// `Deployment`…
    pub kind: &'static str,
    /// Index into the message table.
    pub message: u16,
}
