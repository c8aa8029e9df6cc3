//! The Swagger 2.0 document as protobuf: the `openapi.v2.Document` message of gnostic's
//! `openapiv2/OpenAPIv2.proto` (github.com/google/gnostic), which client-go's
//! `OpenAPISchema` asks for as `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`.
//!
//! kube-apiserver parses its JSON document into gnostic's structs and marshals them; this
//! encodes the JSON [`Value`] straight to the same wire format, keeping field numbers in
//! ascending order and named lists (`properties`, `paths`, `definitions`, …) in the
//! order of the JSON object. As gnostic does, an `x-*` extension, a `default`, an
//! `example` and each `enum` value become an `Any` whose `yaml` field holds the value's
//! text (JSON, which is YAML). Keys the proto has no field for are skipped, and so are
//! scalars of the wrong JSON type; proto3 zero values (empty strings, `false`) are not
//! written.

use serde_json::{Map, Value};

/// Protobuf wire type of varints (`bool`, `int64`).
const VARINT: u8 = 0;
/// Protobuf wire type of `double`.
const FIXED64: u8 = 1;
/// Protobuf wire type of strings and messages.
const LEN: u8 = 2;

/// Appends `value` as a base-128 varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends the key of field `number` with `wire_type`.
fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field.
fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends an embedded message built by `build` (written even when empty: a present
/// message differs from an absent one).
fn put_message(out: &mut Vec<u8>, number: u32, build: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    build(&mut inner);
    put_bytes(out, number, &inner);
}

/// Appends a non-empty string.
fn put_str(out: &mut Vec<u8>, number: u32, value: &str) {
    if !value.is_empty() {
        put_bytes(out, number, value.as_bytes());
    }
}

/// A JSON object's value of `key`.
fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key)
}

/// `string` field from `map[key]`.
fn string(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>, key: &str) {
    if let Some(Value::String(s)) = get(map, key) {
        put_str(out, number, s);
    }
}

/// `repeated string` field from the array `map[key]`.
fn strings(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>, key: &str) {
    if let Some(Value::Array(items)) = get(map, key) {
        for s in items.iter().filter_map(Value::as_str) {
            put_bytes(out, number, s.as_bytes());
        }
    }
}

/// `bool` field from `map[key]`, when true.
fn boolean(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>, key: &str) {
    if let Some(Value::Bool(true)) = get(map, key) {
        put_key(out, number, VARINT);
        put_varint(out, 1);
    }
}

/// `double` field from `map[key]`, when non-zero.
fn double(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>, key: &str) {
    if let Some(v) = get(map, key).and_then(Value::as_f64).filter(|v| *v != 0.0) {
        put_key(out, number, FIXED64);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// `int64` field from `map[key]`, when non-zero.
fn int64(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>, key: &str) {
    if let Some(v) = get(map, key).and_then(Value::as_i64).filter(|v| *v != 0) {
        put_key(out, number, VARINT);
        // int64 is written as its two's-complement bits.
        put_varint(out, v as u64);
    }
}

/// `Any` message: `yaml` (2) holds the value's text.
fn any(out: &mut Vec<u8>, value: &Value) {
    put_str(out, 2, &value.to_string());
}

/// `Any` field from `map[key]`.
fn any_field(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>, key: &str) {
    if let Some(v) = get(map, key) {
        put_message(out, number, |m| any(m, v));
    }
}

/// `repeated Any` field from the array `map[key]`.
fn any_list(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>, key: &str) {
    if let Some(Value::Array(items)) = get(map, key) {
        for v in items {
            put_message(out, number, |m| any(m, v));
        }
    }
}

/// `repeated NamedAny vendor_extension`: every `x-*` key of `map`, in order.
fn vendor_extensions(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>) {
    for (name, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        put_message(out, number, |m| {
            put_str(m, 1, name);
            put_message(m, 2, |a| any(a, value));
        });
    }
}

/// `repeated NamedX`: `{name = 1, value = 2}` for every entry of the object `value`
/// accepted by `keep`, the value encoded by `encode`.
fn named(
    out: &mut Vec<u8>,
    number: u32,
    value: Option<&Value>,
    keep: impl Fn(&str) -> bool,
    encode: impl Fn(&mut Vec<u8>, &Value),
) {
    if let Some(Value::Object(entries)) = value {
        for (name, v) in entries.iter().filter(|(k, _)| keep(k)) {
            put_message(out, number, |m| {
                put_str(m, 1, name);
                put_message(m, 2, |inner| encode(inner, v));
            });
        }
    }
}

/// Runs `encode` on `value` when it is an object.
fn object(
    out: &mut Vec<u8>,
    value: &Value,
    encode: impl FnOnce(&mut Vec<u8>, &Map<String, Value>),
) {
    if let Value::Object(map) = value {
        encode(out, map);
    }
}

/// Encodes the Swagger 2.0 `document` as an `openapi.v2.Document` message.
pub fn encode_document(document: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    object(&mut out, document, |out, map| {
        string(out, 1, map, "swagger");
        if let Some(info_value) = get(map, "info") {
            put_message(out, 2, |m| object(m, info_value, info));
        }
        string(out, 3, map, "host");
        string(out, 4, map, "basePath");
        strings(out, 5, map, "schemes");
        strings(out, 6, map, "consumes");
        strings(out, 7, map, "produces");
        if let Some(Value::Object(paths)) = get(map, "paths") {
            put_message(out, 8, |m| {
                vendor_extensions(m, 1, paths);
                named(
                    m,
                    2,
                    get(map, "paths"),
                    |k| !k.starts_with("x-"),
                    |i, v| object(i, v, path_item),
                );
            });
        }
        if let Some(definitions) = get(map, "definitions") {
            put_message(out, 9, |m| named(m, 1, Some(definitions), |_| true, schema));
        }
        if let Some(parameters) = get(map, "parameters") {
            put_message(out, 10, |m| {
                named(
                    m,
                    1,
                    Some(parameters),
                    |_| true,
                    |i, v| object(i, v, parameter),
                )
            });
        }
        if let Some(responses) = get(map, "responses") {
            put_message(out, 11, |m| {
                named(
                    m,
                    1,
                    Some(responses),
                    |_| true,
                    |i, v| object(i, v, response),
                )
            });
        }
        security(out, 12, map);
        if let Some(definitions) = get(map, "securityDefinitions") {
            put_message(out, 13, |m| {
                named(m, 1, Some(definitions), |_| true, security_definition)
            });
        }
        if let Some(Value::Array(tags)) = get(map, "tags") {
            for tag in tags {
                put_message(out, 14, |m| {
                    object(m, tag, |m, t| {
                        string(m, 1, t, "name");
                        string(m, 2, t, "description");
                        external_docs(m, 3, t);
                        vendor_extensions(m, 4, t);
                    })
                });
            }
        }
        external_docs(out, 15, map);
        vendor_extensions(out, 16, map);
    });
    out
}

fn info(out: &mut Vec<u8>, map: &Map<String, Value>) {
    string(out, 1, map, "title");
    string(out, 2, map, "version");
    string(out, 3, map, "description");
    string(out, 4, map, "termsOfService");
    if let Some(contact) = get(map, "contact") {
        put_message(out, 5, |m| {
            object(m, contact, |m, c| {
                string(m, 1, c, "name");
                string(m, 2, c, "url");
                string(m, 3, c, "email");
                vendor_extensions(m, 4, c);
            })
        });
    }
    if let Some(license) = get(map, "license") {
        put_message(out, 6, |m| {
            object(m, license, |m, l| {
                string(m, 1, l, "name");
                string(m, 2, l, "url");
                vendor_extensions(m, 3, l);
            })
        });
    }
    vendor_extensions(out, 7, map);
}

/// `ExternalDocs` field from `map["externalDocs"]`.
fn external_docs(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>) {
    if let Some(docs) = get(map, "externalDocs") {
        put_message(out, number, |m| {
            object(m, docs, |m, d| {
                string(m, 1, d, "description");
                string(m, 2, d, "url");
                vendor_extensions(m, 3, d);
            })
        });
    }
}

/// `repeated SecurityRequirement` field from `map["security"]`.
fn security(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>) {
    if let Some(Value::Array(requirements)) = get(map, "security") {
        for requirement in requirements {
            put_message(out, number, |m| {
                // NamedStringArray { name, StringArray { repeated string value = 1 } }
                named(
                    m,
                    1,
                    Some(requirement),
                    |_| true,
                    |i, scopes| {
                        if let Value::Array(scopes) = scopes {
                            for s in scopes.iter().filter_map(Value::as_str) {
                                put_bytes(i, 1, s.as_bytes());
                            }
                        }
                    },
                )
            });
        }
    }
}

/// `SecurityDefinitionsItem`: the oneof case chosen by `type` (and `flow` for OAuth2).
fn security_definition(out: &mut Vec<u8>, value: &Value) {
    object(out, value, |out, map| {
        let kind = get(map, "type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "basic" => put_message(out, 1, |m| {
                string(m, 1, map, "type");
                string(m, 2, map, "description");
                vendor_extensions(m, 3, map);
            }),
            "apiKey" => put_message(out, 2, |m| {
                string(m, 1, map, "type");
                string(m, 2, map, "name");
                string(m, 3, map, "in");
                string(m, 4, map, "description");
                vendor_extensions(m, 5, map);
            }),
            "oauth2" => {
                let flow = get(map, "flow").and_then(Value::as_str).unwrap_or_default();
                // (oneof case, has authorizationUrl, has tokenUrl)
                let (case, authorization, token) = match flow {
                    "implicit" => (3, true, false),
                    "password" => (4, false, true),
                    "application" => (5, false, true),
                    "accessCode" => (6, true, true),
                    _ => return,
                };
                put_message(out, case, |m| {
                    string(m, 1, map, "type");
                    string(m, 2, map, "flow");
                    if let Some(scopes) = get(map, "scopes") {
                        put_message(m, 3, |s| {
                            named(s, 1, Some(scopes), |_| true, |_, _| {});
                        });
                    }
                    let mut next = 4;
                    if authorization {
                        string(m, next, map, "authorizationUrl");
                        next += 1;
                    }
                    if token {
                        string(m, next, map, "tokenUrl");
                        next += 1;
                    }
                    string(m, next, map, "description");
                    vendor_extensions(m, next + 1, map);
                });
            }
            _ => {}
        }
    });
}

fn path_item(out: &mut Vec<u8>, map: &Map<String, Value>) {
    string(out, 1, map, "$ref");
    for (number, method) in (2..).zip(["get", "put", "post", "delete", "options", "head", "patch"])
    {
        if let Some(op) = get(map, method) {
            put_message(out, number, |m| object(m, op, operation));
        }
    }
    parameters(out, 9, map);
    vendor_extensions(out, 10, map);
}

fn operation(out: &mut Vec<u8>, map: &Map<String, Value>) {
    strings(out, 1, map, "tags");
    string(out, 2, map, "summary");
    string(out, 3, map, "description");
    external_docs(out, 4, map);
    string(out, 5, map, "operationId");
    strings(out, 6, map, "produces");
    strings(out, 7, map, "consumes");
    parameters(out, 8, map);
    if let Some(Value::Object(responses)) = get(map, "responses") {
        put_message(out, 9, |m| {
            named(
                m,
                1,
                get(map, "responses"),
                |k| !k.starts_with("x-"),
                |i, v| {
                    // ResponseValue oneof: response = 1 | json_reference = 2.
                    object(i, v, |i, r| match get(r, "$ref") {
                        Some(_) => put_message(i, 2, |j| json_reference(j, r)),
                        None => put_message(i, 1, |j| response(j, r)),
                    })
                },
            );
            vendor_extensions(m, 2, responses);
        });
    }
    strings(out, 10, map, "schemes");
    boolean(out, 11, map, "deprecated");
    security(out, 12, map);
    vendor_extensions(out, 13, map);
}

fn json_reference(out: &mut Vec<u8>, map: &Map<String, Value>) {
    string(out, 1, map, "$ref");
    string(out, 2, map, "description");
}

/// `repeated ParametersItem` field from `map["parameters"]`.
fn parameters(out: &mut Vec<u8>, number: u32, map: &Map<String, Value>) {
    if let Some(Value::Array(items)) = get(map, "parameters") {
        for item in items {
            put_message(out, number, |m| {
                // ParametersItem oneof: parameter = 1 | json_reference = 2.
                object(m, item, |m, p| match get(p, "$ref") {
                    Some(_) => put_message(m, 2, |j| json_reference(j, p)),
                    None => put_message(m, 1, |j| parameter(j, p)),
                })
            });
        }
    }
}

/// `Parameter`: oneof body_parameter = 1 | non_body_parameter = 2, by `in`.
fn parameter(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let location = get(map, "in").and_then(Value::as_str).unwrap_or_default();
    if location == "body" {
        put_message(out, 1, |m| {
            string(m, 1, map, "description");
            string(m, 2, map, "name");
            string(m, 3, map, "in");
            boolean(m, 4, map, "required");
            if let Some(s) = get(map, "schema") {
                put_message(m, 5, |i| schema(i, s));
            }
            vendor_extensions(m, 6, map);
        });
        return;
    }
    // NonBodyParameter oneof case, and whether the sub-schema has allow_empty_value
    // (5), which shifts every later field by one.
    let (case, allow_empty) = match location {
        "header" => (1, false),
        "formData" => (2, true),
        "query" => (3, true),
        "path" => (4, false),
        _ => return,
    };
    put_message(out, 2, |m| {
        put_message(m, case, |s| {
            boolean(s, 1, map, "required");
            string(s, 2, map, "in");
            string(s, 3, map, "description");
            string(s, 4, map, "name");
            let base = if allow_empty {
                boolean(s, 5, map, "allowEmptyValue");
                6
            } else {
                5
            };
            primitive_fields(s, base, map);
            vendor_extensions(s, base + 17, map);
        })
    });
}

/// The seventeen fields (`type` … `multiple_of`) that non-body parameters,
/// `PrimitivesItems` and `Header` share, numbered from `base`.
fn primitive_fields(out: &mut Vec<u8>, base: u32, map: &Map<String, Value>) {
    string(out, base, map, "type");
    string(out, base + 1, map, "format");
    if let Some(items) = get(map, "items") {
        put_message(out, base + 2, |m| object(m, items, primitives_items));
    }
    string(out, base + 3, map, "collectionFormat");
    any_field(out, base + 4, map, "default");
    double(out, base + 5, map, "maximum");
    boolean(out, base + 6, map, "exclusiveMaximum");
    double(out, base + 7, map, "minimum");
    boolean(out, base + 8, map, "exclusiveMinimum");
    int64(out, base + 9, map, "maxLength");
    int64(out, base + 10, map, "minLength");
    string(out, base + 11, map, "pattern");
    int64(out, base + 12, map, "maxItems");
    int64(out, base + 13, map, "minItems");
    boolean(out, base + 14, map, "uniqueItems");
    any_list(out, base + 15, map, "enum");
    double(out, base + 16, map, "multipleOf");
}

fn primitives_items(out: &mut Vec<u8>, map: &Map<String, Value>) {
    primitive_fields(out, 1, map);
    vendor_extensions(out, 18, map);
}

fn response(out: &mut Vec<u8>, map: &Map<String, Value>) {
    string(out, 1, map, "description");
    if let Some(s) = get(map, "schema") {
        // SchemaItem oneof: schema = 1 | file_schema = 2; Swagger's `file` type is
        // not used by Kubernetes, so every schema is a `Schema`.
        put_message(out, 2, |m| put_message(m, 1, |i| schema(i, s)));
    }
    if let Some(headers) = get(map, "headers") {
        put_message(out, 3, |m| {
            named(
                m,
                1,
                Some(headers),
                |_| true,
                |i, h| {
                    object(i, h, |i, h| {
                        primitive_fields(i, 1, h);
                        string(i, 18, h, "description");
                        vendor_extensions(i, 19, h);
                    })
                },
            )
        });
    }
    if let Some(examples) = get(map, "examples") {
        put_message(out, 4, |m| named(m, 1, Some(examples), |_| true, any));
    }
    vendor_extensions(out, 5, map);
}

/// `Schema` message of the JSON schema `value`.
fn schema(out: &mut Vec<u8>, value: &Value) {
    object(out, value, |out, map| {
        string(out, 1, map, "$ref");
        string(out, 2, map, "format");
        string(out, 3, map, "title");
        string(out, 4, map, "description");
        any_field(out, 5, map, "default");
        double(out, 6, map, "multipleOf");
        double(out, 7, map, "maximum");
        boolean(out, 8, map, "exclusiveMaximum");
        double(out, 9, map, "minimum");
        boolean(out, 10, map, "exclusiveMinimum");
        int64(out, 11, map, "maxLength");
        int64(out, 12, map, "minLength");
        string(out, 13, map, "pattern");
        int64(out, 14, map, "maxItems");
        int64(out, 15, map, "minItems");
        boolean(out, 16, map, "uniqueItems");
        int64(out, 17, map, "maxProperties");
        int64(out, 18, map, "minProperties");
        strings(out, 19, map, "required");
        any_list(out, 20, map, "enum");
        match get(map, "additionalProperties") {
            // AdditionalPropertiesItem oneof: schema = 1 | boolean = 2.
            Some(Value::Bool(b)) => put_message(out, 21, |m| {
                put_key(m, 2, VARINT);
                put_varint(m, u64::from(*b));
            }),
            Some(s @ Value::Object(_)) => {
                put_message(out, 21, |m| put_message(m, 1, |i| schema(i, s)))
            }
            _ => {}
        }
        match get(map, "type") {
            // TypeItem { repeated string value = 1 }
            Some(Value::String(t)) => put_message(out, 22, |m| put_bytes(m, 1, t.as_bytes())),
            Some(Value::Array(_)) => put_message(out, 22, |m| strings(m, 1, map, "type")),
            _ => {}
        }
        match get(map, "items") {
            // ItemsItem { repeated Schema schema = 1 }
            Some(Value::Array(items)) => put_message(out, 23, |m| {
                for item in items {
                    put_message(m, 1, |i| schema(i, item));
                }
            }),
            Some(item @ Value::Object(_)) => {
                put_message(out, 23, |m| put_message(m, 1, |i| schema(i, item)))
            }
            _ => {}
        }
        if let Some(Value::Array(parts)) = get(map, "allOf") {
            for part in parts {
                put_message(out, 24, |m| schema(m, part));
            }
        }
        if let Some(properties) = get(map, "properties") {
            put_message(out, 25, |m| named(m, 1, Some(properties), |_| true, schema));
        }
        string(out, 26, map, "discriminator");
        boolean(out, 27, map, "readOnly");
        if let Some(xml) = get(map, "xml") {
            put_message(out, 28, |m| {
                object(m, xml, |m, x| {
                    string(m, 1, x, "name");
                    string(m, 2, x, "namespace");
                    string(m, 3, x, "prefix");
                    boolean(m, 4, x, "attribute");
                    boolean(m, 5, x, "wrapped");
                    vendor_extensions(m, 6, x);
                })
            });
        }
        external_docs(out, 29, map);
        any_field(out, 30, map, "example");
        vendor_extensions(out, 31, map);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One decoded record: a varint, the bits of a fixed64, or a length-delimited slice.
    #[derive(Debug, PartialEq)]
    enum Field<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
    }

    fn read_varint(input: &mut &[u8]) -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let (byte, rest) = input.split_first().unwrap();
            *input = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint too long");
    }

    /// The records of `message`, in order.
    fn decode(mut message: &[u8]) -> Vec<(u32, Field<'_>)> {
        let mut fields = Vec::new();
        while !message.is_empty() {
            let key = read_varint(&mut message);
            let number = u32::try_from(key >> 3).unwrap();
            let field = match key & 7 {
                0 => Field::Varint(read_varint(&mut message)),
                1 => {
                    let (bits, rest) = message.split_at(8);
                    message = rest;
                    Field::Fixed64(u64::from_le_bytes(bits.try_into().unwrap()))
                }
                2 => {
                    let len = usize::try_from(read_varint(&mut message)).unwrap();
                    let (bytes, rest) = message.split_at(len);
                    message = rest;
                    Field::Bytes(bytes)
                }
                other => panic!("wire type {other}"),
            };
            fields.push((number, field));
        }
        fields
    }

    /// The length-delimited values of field `number`.
    fn all(message: &[u8], number: u32) -> Vec<&[u8]> {
        decode(message)
            .into_iter()
            .filter_map(|(n, f)| match f {
                Field::Bytes(b) if n == number => Some(b),
                _ => None,
            })
            .collect()
    }

    /// The only length-delimited value of field `number`.
    fn one(message: &[u8], number: u32) -> &[u8] {
        let found = all(message, number);
        assert_eq!(found.len(), 1, "field {number}");
        found[0]
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    /// The `Schema` of `name` in a `Properties` or `Definitions` message.
    fn named_schema<'a>(message: &'a [u8], name: &str) -> &'a [u8] {
        all(message, 1)
            .into_iter()
            .find(|entry| one(entry, 1) == name.as_bytes())
            .map(|entry| one(entry, 2))
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn the_writer_uses_the_protobuf_wire_format() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        put_str(&mut out, 1, "hi");
        put_str(&mut out, 2, "");
        assert_eq!(out, [0x0a, 2, b'h', b'i']);
        out.clear();
        put_message(&mut out, 22, |m| put_bytes(m, 1, b"object"));
        // Field 22, wire type 2 is key 178 (0xb2 0x01).
        assert_eq!(
            out,
            [0xb2, 0x01, 8, 0x0a, 6, b'o', b'b', b'j', b'e', b'c', b't']
        );
        out.clear();
        let map = json!({"n": -1, "d": 1.5, "t": true, "f": false})
            .as_object()
            .unwrap()
            .clone();
        int64(&mut out, 1, &map, "n");
        double(&mut out, 2, &map, "d");
        boolean(&mut out, 3, &map, "t");
        boolean(&mut out, 4, &map, "f");
        let mut expected = vec![0x08];
        expected.extend([0xff; 9]);
        expected.push(0x01);
        expected.push(0x11);
        expected.extend(1.5f64.to_bits().to_le_bytes());
        expected.extend([0x18, 1]);
        assert_eq!(out, expected);
    }

    #[test]
    fn a_tiny_document_has_hand_checked_bytes() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "K", "version": "v1"},
            "definitions": {"A": {"type": "object", "x-k": 1}},
        });
        let expected: Vec<u8> = [
            &[0x0a, 3][..],
            b"2.0",
            // info (2): title (1) "K", version (2) "v1"
            &[0x12, 7, 0x0a, 1, b'K', 0x12, 2, b'v', b'1'],
            // definitions (9) { NamedSchema (1) { name "A", Schema (2) { .. } } }
            &[0x4a, 31, 0x0a, 29, 0x0a, 1, b'A', 0x12, 24],
            // type (22) TypeItem { value "object" }
            &[0xb2, 0x01, 8, 0x0a, 6],
            b"object",
            // vendor_extension (31) NamedAny { name "x-k", Any { yaml "1" } }
            &[0xfa, 0x01, 10, 0x0a, 3],
            b"x-k",
            &[0x12, 3, 0x12, 1, b'1'],
        ]
        .concat();
        assert_eq!(encode_document(&doc), expected);
    }

    #[test]
    fn schemas_parameters_and_responses_decode_to_the_gnostic_shape() {
        let doc = json!({
            "swagger": "2.0",
            "paths": {
                "/api/v1/pods": {
                    "get": {
                        "tags": ["core_v1"],
                        "operationId": "listPods",
                        "produces": ["application/json"],
                        "parameters": [
                            {"name": "limit", "in": "query", "type": "integer", "uniqueItems": true},
                            {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/Pod"}},
                        ],
                        "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/Pod"}}},
                        "x-kubernetes-action": "list",
                    },
                    "parameters": [{"name": "namespace", "in": "path", "required": true, "type": "string"}],
                },
            },
            "definitions": {
                "Pod": {
                    "description": "A pod.",
                    "required": ["spec"],
                    "properties": {
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "list": {"type": "array", "items": {"$ref": "#/definitions/C"}, "x-kubernetes-patch-merge-key": "name"},
                        "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                        "open": {"additionalProperties": true},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}],
                },
            },
            "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}],
        });
        let bytes = encode_document(&doc);

        let pod = named_schema(one(&bytes, 9), "Pod");
        assert_eq!(text(one(pod, 4)), "A pod.");
        assert_eq!(text(one(pod, 19)), "spec");
        let gvk = one(pod, 31);
        assert_eq!(text(one(gvk, 1)), "x-kubernetes-group-version-kind");
        let yaml: Value = serde_json::from_slice(one(one(gvk, 2), 2)).unwrap();
        assert_eq!(yaml, json!([{"group": "", "kind": "Pod", "version": "v1"}]));
        let properties = one(pod, 25);
        let names: Vec<_> = all(properties, 1).iter().map(|p| text(one(p, 1))).collect();
        assert_eq!(names, ["labels", "list", "mode", "open"]);
        let labels = named_schema(properties, "labels");
        let additional = one(one(labels, 21), 1);
        assert_eq!(text(one(one(additional, 22), 1)), "string");
        let list = named_schema(properties, "list");
        assert_eq!(text(one(one(one(list, 23), 1), 1)), "#/definitions/C");
        let mode = named_schema(properties, "mode");
        let enums: Vec<_> = all(mode, 20).iter().map(|a| text(one(a, 2))).collect();
        assert_eq!(enums, ["\"A\"", "\"B\""]);
        assert_eq!(text(one(one(mode, 5), 2)), "\"A\"");
        let open = named_schema(properties, "open");
        assert_eq!(decode(one(open, 21)), [(2, Field::Varint(1))]);

        let paths = one(&bytes, 8);
        let item = one(one(paths, 2), 2);
        let get = one(item, 2);
        assert_eq!(text(one(get, 1)), "core_v1");
        assert_eq!(text(one(get, 5)), "listPods");
        let params = all(get, 8);
        assert_eq!(params.len(), 2);
        // ParametersItem.parameter.non_body_parameter.query_parameter_sub_schema
        let query = one(one(one(params[0], 1), 2), 3);
        assert_eq!(text(one(query, 4)), "limit");
        assert_eq!(text(one(query, 6)), "integer");
        assert!(decode(query).contains(&(20, Field::Varint(1))));
        // ParametersItem.parameter.body_parameter
        let body = one(one(params[1], 1), 1);
        assert_eq!(text(one(body, 2)), "body");
        assert!(decode(body).contains(&(4, Field::Varint(1))));
        assert_eq!(text(one(one(body, 5), 1)), "#/definitions/Pod");
        let responses = one(get, 9);
        let ok = one(responses, 1);
        assert_eq!(text(one(ok, 1)), "200");
        let response = one(one(ok, 2), 1);
        assert_eq!(text(one(response, 1)), "OK");
        assert_eq!(text(one(one(one(response, 2), 1), 1)), "#/definitions/Pod");
        assert_eq!(text(one(one(get, 13), 1)), "x-kubernetes-action");
        // Path-level parameter: path_parameter_sub_schema (4), type at 5.
        let path = one(one(one(one(one(item, 9), 1), 2), 4), 5);
        assert_eq!(text(path), "string");

        let bearer = one(one(&bytes, 13), 1);
        assert_eq!(text(one(bearer, 1)), "BearerToken");
        let api_key = one(one(bearer, 2), 2);
        assert_eq!(text(one(api_key, 1)), "apiKey");
        assert_eq!(text(one(api_key, 3)), "header");
        let requirement = one(one(&bytes, 12), 1);
        assert_eq!(text(one(requirement, 1)), "BearerToken");
        assert_eq!(one(requirement, 2), b"");
    }
}
