//! Protobuf message → the JSON Kubernetes would have written for the same object:
//! field names from the schema table, the special apimachinery messages (Quantity,
//! IntOrString, Time, MicroTime, RawExtension, FieldsV1) as their JSON forms,
//! and Go's `omitempty` approximated by leaving out empty strings and zero times (Go
//! writes every non-pointer field on the wire, even when empty).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

use super::ProtobufError;
use super::schema::{Card, Kind, Message};
use super::table::MESSAGES;
use super::wire::{Records, WireValue, read_varint};

/// Deeper nesting than any Kubernetes object has; bounds recursion on hostile input.
const MAX_DEPTH: usize = 64;

/// Reads `bytes` as the message at `index` of the table; `path` names it in errors.
pub(crate) fn message(
    index: u16,
    bytes: &[u8],
    path: &str,
    depth: usize,
) -> Result<Map<String, Value>, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::field(path, "nested too deeply"));
    }
    let schema: &Message = MESSAGES
        .get(usize::from(index))
        .ok_or_else(|| ProtobufError::field(path, "no schema"))?;
    let mut object = Map::new();
    for record in Records::new(bytes) {
        let (number, wire) = record.map_err(|e| e.at(path))?;
        // Unknown numbers are skipped, as protobuf readers do: newer clients may send
        // fields this schema predates.
        let Some(&(_, name, kind, card)) = schema.field(number) else {
            continue;
        };
        let field_path = join(path, name);
        match card {
            Card::One => {
                let value = scalar_or_message(kind, wire, &field_path, depth)?;
                if is_empty(&value) {
                    object.remove(name);
                } else {
                    object.insert(name.to_string(), value);
                }
            }
            Card::Many => {
                let list = object
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else {
                    return Err(ProtobufError::field(
                        &field_path,
                        "is both a list and a value",
                    ));
                };
                let at = format!("{field_path}[{}]", list.len());
                match (kind, wire) {
                    // Packed repeated scalars: one slice of varints.
                    (Kind::I32 | Kind::I64 | Kind::Bool, WireValue::Bytes(mut packed)) => {
                        while !packed.is_empty() {
                            let raw = read_varint(&mut packed).map_err(|e| e.at(&at))?;
                            list.push(scalar_or_message(kind, WireValue::Varint(raw), &at, depth)?);
                        }
                    }
                    _ => list.push(scalar_or_message(kind, wire, &at, depth)?),
                }
            }
            Card::Inline => {
                let Kind::Msg(inner) = kind else {
                    return Err(ProtobufError::field(
                        &field_path,
                        "only messages embed inline",
                    ));
                };
                let fields = message(inner, self::bytes(wire, &field_path)?, path, depth + 1)?;
                object.extend(fields);
            }
            Card::Map => {
                let WireValue::Bytes(entry) = wire else {
                    return Err(ProtobufError::field(
                        &field_path,
                        "a map entry must be length-delimited",
                    ));
                };
                let (key, value) = map_entry(kind, entry, &field_path, depth)?;
                let map = object
                    .entry(name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
            }
        }
    }
    Ok(object)
}

/// A map entry is a message with the key as field 1 and the value as field 2.
fn map_entry(
    kind: Kind,
    entry: &[u8],
    path: &str,
    depth: usize,
) -> Result<(String, Value), ProtobufError> {
    let mut key = String::new();
    let mut value = None;
    for record in Records::new(entry) {
        match record.map_err(|e| e.at(path))? {
            (1, wire) => key = string(wire, path)?,
            (2, wire) => value = Some(scalar_or_message(kind, wire, &join(path, &key), depth)?),
            _ => {}
        }
    }
    let value = match value {
        Some(value) => value,
        // An absent value is the zero value of its kind.
        None => match kind {
            Kind::Msg(_) => Value::Object(Map::new()),
            Kind::Quantity => Value::String("0".into()),
            _ => Value::String(String::new()),
        },
    };
    Ok((key, value))
}

fn scalar_or_message(
    kind: Kind,
    wire: WireValue<'_>,
    path: &str,
    depth: usize,
) -> Result<Value, ProtobufError> {
    Ok(match kind {
        Kind::Str => Value::String(string(wire, path)?),
        Kind::Bytes => Value::String(base64(bytes(wire, path)?)),
        Kind::Bool => Value::Bool(varint(wire, path)? != 0),
        // int32 travels sign-extended to 64 bits; truncating restores it.
        Kind::I32 => Value::from(varint(wire, path)? as i64 as i32),
        Kind::I64 => Value::from(varint(wire, path)? as i64),
        Kind::Msg(index) => Value::Object(message(index, bytes(wire, path)?, path, depth + 1)?),
        Kind::Quantity => {
            let text = first_string(bytes(wire, path)?, 1, path)?;
            Value::String(if text.is_empty() { "0".into() } else { text })
        }
        Kind::IntOrString => int_or_string(bytes(wire, path)?, path)?,
        Kind::Time | Kind::MicroTime => time(kind, bytes(wire, path)?, path)?,
        Kind::RawJson => raw_json(bytes(wire, path)?, path, depth)?,
    })
}

/// `{type (0 int, 1 string), intVal, strVal}`.
fn int_or_string(bytes: &[u8], path: &str) -> Result<Value, ProtobufError> {
    let (mut is_string, mut int_val, mut str_val) = (false, 0i32, String::new());
    for record in Records::new(bytes) {
        match record.map_err(|e| e.at(path))? {
            (1, wire) => is_string = varint(wire, path)? == 1,
            (2, wire) => int_val = varint(wire, path)? as i64 as i32,
            (3, wire) => str_val = string(wire, path)?,
            _ => {}
        }
    }
    Ok(if is_string {
        Value::String(str_val)
    } else {
        Value::from(int_val)
    })
}

/// `{seconds, nanos}`; an empty message is the zero time, which JSON leaves out.
fn time(kind: Kind, bytes: &[u8], path: &str) -> Result<Value, ProtobufError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i32);
    for record in Records::new(bytes) {
        match record.map_err(|e| e.at(path))? {
            (1, wire) => seconds = varint(wire, path)? as i64,
            (2, wire) => nanos = varint(wire, path)? as i64 as i32,
            _ => {}
        }
    }
    // Time keeps seconds only (kube-apiserver drops the nanoseconds too);
    // MicroTime keeps microseconds.
    let nanos = if kind == Kind::MicroTime {
        nanos - nanos % 1000
    } else {
        0
    };
    let timestamp = Timestamp::new(seconds, nanos)
        .map_err(|e| ProtobufError::field(path, &format!("is not a valid time: {e}")))?;
    let value = if kind == Kind::MicroTime {
        serde_json::to_value(MicroTime(timestamp))
    } else {
        serde_json::to_value(Time(timestamp))
    };
    value.map_err(|e| ProtobufError::field(path, &e.to_string()))
}

/// `{raw}`: JSON, or a nested protobuf envelope.
fn raw_json(bytes: &[u8], path: &str, depth: usize) -> Result<Value, ProtobufError> {
    let mut raw: &[u8] = &[];
    for record in Records::new(bytes) {
        if let (1, wire) = record.map_err(|e| e.at(path))? {
            raw = self::bytes(wire, path)?;
        }
    }
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(super::MAGIC) {
        return super::envelope(raw, depth + 1).map_err(|e| e.at(path));
    }
    serde_json::from_slice(raw)
        .map_err(|e| ProtobufError::field(path, &format!("does not hold JSON: {e}")))
}

fn first_string(bytes: &[u8], number: u32, path: &str) -> Result<String, ProtobufError> {
    let mut text = String::new();
    for record in Records::new(bytes) {
        let (n, wire) = record.map_err(|e| e.at(path))?;
        if n == number {
            text = string(wire, path)?;
        }
    }
    Ok(text)
}

fn string(wire: WireValue<'_>, path: &str) -> Result<String, ProtobufError> {
    String::from_utf8(bytes(wire, path)?.to_vec())
        .map_err(|_| ProtobufError::field(path, "is not valid UTF-8"))
}

fn bytes<'a>(wire: WireValue<'a>, path: &str) -> Result<&'a [u8], ProtobufError> {
    match wire {
        WireValue::Bytes(bytes) => Ok(bytes),
        _ => Err(wrong_type(path, "length-delimited")),
    }
}

fn varint(wire: WireValue<'_>, path: &str) -> Result<u64, ProtobufError> {
    match wire {
        WireValue::Varint(value) => Ok(value),
        _ => Err(wrong_type(path, "a varint")),
    }
}

fn wrong_type(path: &str, expected: &str) -> ProtobufError {
    ProtobufError::field(
        path,
        &format!("has the wrong wire type (expected {expected})"),
    )
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Standard base64 with padding, as Go's encoding/json writes `[]byte`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }
}
