//! Name, label and annotation rules (Kubernetes `apimachinery/pkg/util/validation`),
//! with the same explanations Kubernetes gives.

use std::collections::BTreeMap;

use crate::field::FieldError;

/// Which naming rule a resource's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most resources): up to 253 characters.
    Subdomain,
    /// RFC 1123 label (namespaces): up to 63 characters.
    Label,
    /// RFC 1035 label (services): starts with a letter, up to 63 characters.
    Dns1035,
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// True for an RFC 1123 subdomain.
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Checks `name` against `rule`; the errors name `field`.
pub fn check_name(name: &str, rule: NameRule, field: &str) -> Vec<FieldError> {
    let (ok, max, msg) = match rule {
        NameRule::Subdomain => (is_subdomain(name), 253, SUBDOMAIN_MSG),
        NameRule::Label => (is_label(name), 63, LABEL_MSG),
        NameRule::Dns1035 => (
            is_label(name) && name.as_bytes()[0].is_ascii_lowercase(),
            63,
            DNS1035_MSG,
        ),
    };
    let mut errors = Vec::new();
    if name.len() > max {
        errors.push(FieldError::invalid(
            field,
            name,
            format!("must be no more than {max} characters"),
        ));
    } else if !ok {
        errors.push(FieldError::invalid(field, name, msg));
    }
    errors
}

/// A qualified name (`name` or `prefix/name`, the rule for label and annotation keys).
fn check_qualified_name(key: &str, field: &str) -> Vec<FieldError> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errors = Vec::new();
    if let Some(prefix) = prefix
        && (prefix.is_empty() || !is_subdomain(prefix))
    {
        errors.push(FieldError::invalid(
            field,
            key,
            format!("prefix part {SUBDOMAIN_MSG}"),
        ));
    }
    let b = name.as_bytes();
    let valid = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !valid {
        errors.push(FieldError::invalid(
            field,
            key,
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ));
    }
    errors
}

/// A label value: empty, or up to 63 of `[-A-Za-z0-9_.]` starting and ending alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    let b = value.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// Checks label keys and values under `field` (`metadata.labels`).
pub fn check_labels(labels: &BTreeMap<String, String>, field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        errors.extend(check_qualified_name(key, field));
        if !is_label_value(value) {
            errors.push(FieldError::invalid(
                field,
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ));
        }
    }
    errors
}

/// Checks annotation keys, and their total size (256 KiB).
pub fn check_annotations(annotations: &BTreeMap<String, String>, field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        errors.extend(check_qualified_name(&key.to_ascii_lowercase(), field));
        total += key.len() + value.len();
    }
    if total > 256 * 1024 {
        errors.push(FieldError {
            kind: crate::field::ErrorType::TooLong,
            field: field.to_string(),
            value: None,
            detail: "may not be more than 262144 bytes".into(),
        });
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123_and_1035() {
        assert!(check_name("web-1.example", NameRule::Subdomain, "metadata.name").is_empty());
        let bad = check_name("Bad_Name", NameRule::Subdomain, "metadata.name");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().starts_with(
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
        ));
        assert!(!check_name("a.b", NameRule::Label, "metadata.name").is_empty());
        assert!(!check_name("1abc", NameRule::Dns1035, "metadata.name").is_empty());
        assert!(check_name("abc-1", NameRule::Dns1035, "metadata.name").is_empty());
        let long = "a".repeat(64);
        assert!(
            check_name(&long, NameRule::Label, "metadata.name")[0]
                .to_string()
                .contains("no more than 63")
        );
    }

    #[test]
    fn labels_and_annotations_are_checked() {
        let good = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "web".to_string()),
            ("tier".to_string(), String::new()),
        ]);
        assert!(check_labels(&good, "metadata.labels").is_empty());
        let bad = BTreeMap::from([("-x".to_string(), "a b".to_string())]);
        assert_eq!(check_labels(&bad, "metadata.labels").len(), 2);
        let big = BTreeMap::from([("k".to_string(), "v".repeat(300_000))]);
        assert_eq!(check_annotations(&big, "metadata.annotations").len(), 1);
    }
}
