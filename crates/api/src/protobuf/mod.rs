//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) of request
//! bodies, read into the JSON the rest of Strata works with. client-go's typed clients
//! (and so `kubectl create deployment|configmap|secret|service|job|token`, `kubectl
//! drain`) send it; responses stay JSON, which every client reads.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` whose `typeMeta` names
//! the kind and whose `raw` bytes are the object. The field numbers come from a table
//! generated from the `k8s-pb` crate's message definitions, the JSON names from
//! k8s-openapi's schemas (see `tests/protobuf_schema.rs`).

mod json;
mod schema;
#[rustfmt::skip]
mod table;
mod wire;

use serde_json::{Map, Value};
use thiserror::Error;

use wire::{Records, WireValue};

/// The media type of Kubernetes' protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtobufError {
    /// The body lacks the `k8s\0` prefix.
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    NotProtobuf,
    /// The envelope or an object is not well-formed protobuf.
    #[error("malformed protobuf: {0}")]
    Wire(String),
    /// A field holds something its type does not allow.
    #[error("{path}: {message}")]
    Field {
        /// JSON path of the field, e.g. `spec.template.spec.containers[0].name`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The envelope names a kind Strata has no protobuf schema for.
    #[error("no protobuf encoding is known for {kind} in {api_version:?}; send it as JSON")]
    UnknownKind {
        /// The envelope's `apiVersion`.
        api_version: String,
        /// The envelope's `kind`.
        kind: String,
    },
    /// The envelope says its `raw` bytes are compressed or not protobuf.
    #[error("unsupported protobuf envelope: {0}")]
    Envelope(String),
}

impl ProtobufError {
    fn field(path: &str, message: &str) -> Self {
        Self::Field {
            path: if path.is_empty() {
                "<object>".into()
            } else {
                path.into()
            },
            message: message.into(),
        }
    }

    /// Places a wire error at `path`.
    fn at(self, path: &str) -> Self {
        match self {
            Self::Wire(message) => Self::field(path, &message),
            other => other,
        }
    }
}

/// Whether `content_type` is Kubernetes' protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.trim_start().starts_with(MEDIA_TYPE)
}

/// Reads a protobuf request body into the JSON object Kubernetes would have sent for
/// it (with `apiVersion` and `kind` from the envelope).
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    envelope(body, 0)
}

/// `runtime.Unknown`: typeMeta (1: apiVersion 1, kind 2), raw (2), contentEncoding (3),
/// contentType (4).
fn envelope(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let unknown = body.strip_prefix(MAGIC).ok_or(ProtobufError::NotProtobuf)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for record in Records::new(unknown) {
        match record? {
            (1, WireValue::Bytes(type_meta)) => {
                for record in Records::new(type_meta) {
                    match record? {
                        (1, WireValue::Bytes(text)) => api_version = utf8(text, "apiVersion")?,
                        (2, WireValue::Bytes(text)) => kind = utf8(text, "kind")?,
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(bytes)) => raw = bytes,
            (3, WireValue::Bytes(encoding)) if !encoding.is_empty() => {
                return Err(ProtobufError::Envelope(format!(
                    "contentEncoding {:?} (only uncompressed bodies are read)",
                    String::from_utf8_lossy(encoding)
                )));
            }
            (4, WireValue::Bytes(content_type))
                if !content_type.is_empty() && !content_type.starts_with(MEDIA_TYPE.as_bytes()) =>
            {
                return Err(ProtobufError::Envelope(format!(
                    "contentType {:?}",
                    String::from_utf8_lossy(content_type)
                )));
            }
            _ => {}
        }
    }
    if kind.is_empty() {
        return Err(ProtobufError::Envelope("the envelope names no kind".into()));
    }
    let root = table::ROOTS
        .iter()
        .find(|r| r.api_version == api_version && r.kind == kind)
        // DeleteOptions travels under the group-version of whatever it deletes.
        .or_else(|| {
            table::ROOTS
                .iter()
                .find(|r| kind == "DeleteOptions" && r.kind == kind)
        })
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let fields = json::message(root.message, raw, "", depth)?;
    let mut object = Map::with_capacity(fields.len() + 2);
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    object.extend(fields);
    Ok(Value::Object(object))
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ProtobufError::Envelope(format!("{what} is not valid UTF-8")))
}
