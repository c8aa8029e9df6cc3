//! One step of a field path, as structured-merge-diff names it: a field of a map
//! (`f:replicas`), an element of an associative list by its keys
//! (`k:{"name":"web"}`), an element of a set list by its value (`v:"a"`) or a list
//! position (`i:0`). Paths print as Kubernetes prints them in conflicts:
//! `.spec.template.spec.containers[name="web"].image`.

use std::fmt;

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a map or struct.
    Field(String),
    /// An element of an associative list, by the canonical JSON of its key fields
    /// (keys sorted, no spaces): `{"containerPort":80,"protocol":"TCP"}`.
    Key(String),
    /// An element of a set list, by the canonical JSON of its value.
    Value(String),
    /// A list position (lists that are neither sets nor associative).
    Index(usize),
}

impl PathElement {
    /// The element of an associative list with these key fields and values.
    pub fn key(fields: &[(&str, &Value)]) -> Self {
        let mut sorted: Vec<&(&str, &Value)> = fields.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let parts: Vec<String> = sorted
            .iter()
            .map(|(name, value)| format!("{}:{}", Value::from(*name), canonical(value)))
            .collect();
        Self::Key(format!("{{{}}}", parts.join(",")))
    }

    /// The element of a set list holding `value`.
    pub fn value(value: &Value) -> Self {
        Self::Value(canonical(value))
    }

    /// The FieldsV1 key: `f:name`, `k:{…}`, `v:…` or `i:n`.
    pub fn to_fields_v1(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(key) => format!("k:{key}"),
            Self::Value(value) => format!("v:{value}"),
            Self::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses a FieldsV1 key; `None` when it is not one. Keys and values are
    /// re-encoded canonically so that they compare equal to computed ones.
    pub fn from_fields_v1(text: &str) -> Option<Self> {
        let (prefix, rest) = text.split_at_checked(2)?;
        match prefix {
            "f:" => Some(Self::Field(rest.to_string())),
            "k:" => match serde_json::from_str::<Value>(rest).ok()? {
                Value::Object(map) => {
                    let fields: Vec<(&str, &Value)> =
                        map.iter().map(|(k, v)| (k.as_str(), v)).collect();
                    Some(Self::key(&fields))
                }
                _ => None,
            },
            "v:" => serde_json::from_str::<Value>(rest)
                .ok()
                .map(|v| Self::value(&v)),
            "i:" => rest.parse().ok().map(Self::Index),
            _ => None,
        }
    }
}

impl fmt::Display for PathElement {
    /// Kubernetes' form: `.name`, `[name="web"]`, `[="value"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(key) => {
                let parts: Vec<String> = match serde_json::from_str::<Value>(key) {
                    Ok(Value::Object(map)) => map.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    _ => vec![key.clone()],
                };
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(value) => write!(f, "[={value}]"),
            Self::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A whole path printed the Kubernetes way.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// JSON with object keys sorted and no spaces, whatever serde_json's map order.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&map[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn elements_round_trip_and_print_like_kubernetes() {
        let port = PathElement::key(&[("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
        assert_eq!(
            port.to_fields_v1(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        assert_eq!(port.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        for element in [
            port,
            PathElement::Field("app.kubernetes.io/name".into()),
            PathElement::value(&json!("a")),
            PathElement::Index(3),
        ] {
            let text = element.to_fields_v1();
            assert_eq!(PathElement::from_fields_v1(&text), Some(element), "{text}");
        }
        assert_eq!(
            PathElement::from_fields_v1(r#"k:{ "protocol": "TCP", "containerPort": 80 }"#)
                .map(|e| e.to_fields_v1()),
            Some(r#"k:{"containerPort":80,"protocol":"TCP"}"#.to_string())
        );
        assert_eq!(PathElement::from_fields_v1("x:y"), None);
        assert_eq!(PathElement::from_fields_v1("k:[1]"), None);
        let path = [
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::key(&[("name", &json!("web"))]),
            PathElement::Field("image".into()),
        ];
        assert_eq!(path_string(&path), r#".spec.containers[name="web"].image"#);
    }
}
