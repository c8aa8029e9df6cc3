//! Reads a TokenRequest sent as Kubernetes protobuf (what `kubectl create token` sends):
//! the `k8s\0` envelope around a `runtime.Unknown` whose `raw` bytes are the
//! `authentication.k8s.io/v1` TokenRequest. Only the spec is read; Strata answers in JSON,
//! which clients accept whatever they sent.

use serde_json::{Value, json};

/// The magic prefix of Kubernetes' protobuf encoding.
const MAGIC: &[u8] = b"k8s\0";

/// Whether `content_type` is Kubernetes' protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with("application/vnd.kubernetes.protobuf")
}

/// The TokenRequest in `body` as the JSON the handler reads (`spec.audiences`,
/// `spec.expirationSeconds`, `spec.boundObjectRef`); `None` when it is not a valid
/// encoding.
pub fn token_request(body: &[u8]) -> Option<Value> {
    let unknown = body.strip_prefix(MAGIC)?;
    let raw = fields(unknown)?
        .into_iter()
        .find_map(|(number, value)| match (number, value) {
            (2, Field::Bytes(raw)) => Some(raw),
            _ => None,
        })?;
    let mut spec = json!({});
    for (number, value) in fields(raw)? {
        if let (2, Field::Bytes(bytes)) = (number, value) {
            spec = token_request_spec(bytes)?;
        }
    }
    Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}))
}

/// `TokenRequestSpec`: audiences (1), boundObjectRef (3), expirationSeconds (4).
fn token_request_spec(bytes: &[u8]) -> Option<Value> {
    let mut audiences = Vec::new();
    let mut spec = serde_json::Map::new();
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (1, Field::Bytes(text)) => audiences.push(json!(text_of(text)?)),
            (3, Field::Bytes(reference)) => {
                let mut object = serde_json::Map::new();
                for (number, value) in fields(reference)? {
                    let key = match number {
                        1 => "kind",
                        2 => "apiVersion",
                        3 => "name",
                        4 => "uid",
                        _ => continue,
                    };
                    if let Field::Bytes(text) = value {
                        object.insert(key.into(), json!(text_of(text)?));
                    }
                }
                spec.insert("boundObjectRef".into(), Value::Object(object));
            }
            (4, Field::Varint(seconds)) => {
                spec.insert("expirationSeconds".into(), json!(seconds as i64));
            }
            _ => {}
        }
    }
    spec.insert("audiences".into(), json!(audiences));
    Some(Value::Object(spec))
}

fn text_of(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// One protobuf field value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in order; `None` on a malformed encoding.
fn fields(mut bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(&mut bytes)?),
            1 => {
                bytes = bytes.get(8..)?;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let value = bytes.get(..len)?;
                bytes = &bytes[len..];
                Field::Bytes(value)
            }
            5 => {
                bytes = bytes.get(4..)?;
                Field::Fixed
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_kubectl_token_request_reads_as_json() {
        let mut reference = field(1, b"Pod");
        reference.extend(field(3, b"app"));
        let mut spec = field(1, b"api");
        spec.extend(field(3, &reference));
        spec.extend([4 << 3, 0xb0, 0x09]); // expirationSeconds = 1200
        let request = field(2, &spec);
        let mut body = MAGIC.to_vec();
        body.extend(field(1, &field(2, b"TokenRequest")));
        body.extend(field(2, &request));
        let json = token_request(&body).unwrap();
        assert_eq!(json["spec"]["audiences"], json!(["api"]));
        assert_eq!(json["spec"]["expirationSeconds"], 1200);
        assert_eq!(json["spec"]["boundObjectRef"]["kind"], "Pod");
        assert_eq!(json["spec"]["boundObjectRef"]["name"], "app");
        assert!(token_request(b"k8s\0\x12\x05ab").is_none());
        assert!(token_request(b"{}").is_none());
    }
}
