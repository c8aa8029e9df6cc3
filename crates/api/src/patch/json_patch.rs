//! JSON patch (RFC 6902): a list of `add`, `remove`, `replace`, `move`, `copy` and
//! `test` operations over JSON pointers (RFC 6901), applied in order and atomically:
//! the first failing operation fails the patch and nothing is applied.

use serde_json::{Map, Value};

use super::{PatchError, type_name};

/// The most operations one JSON patch may have, as in kube-apiserver.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// One decoded operation.
#[derive(Debug)]
enum Op {
    Add { path: Pointer, value: Value },
    Remove { path: Pointer },
    Replace { path: Pointer, value: Value },
    Move { from: Pointer, path: Pointer },
    Copy { from: Pointer, path: Pointer },
    Test { path: Pointer, value: Value },
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Add { .. } => "add",
            Op::Remove { .. } => "remove",
            Op::Replace { .. } => "replace",
            Op::Move { .. } => "move",
            Op::Copy { .. } => "copy",
            Op::Test { .. } => "test",
        }
    }

    fn path(&self) -> &Pointer {
        match self {
            Op::Add { path, .. }
            | Op::Remove { path }
            | Op::Replace { path, .. }
            | Op::Move { path, .. }
            | Op::Copy { path, .. }
            | Op::Test { path, .. } => path,
        }
    }
}

/// A parsed JSON pointer: its text (for messages) and unescaped reference tokens.
#[derive(Debug, Clone)]
struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses `/a/b~1c/0`: `~1` is `/`, `~0` is `~`; `""` is the whole document.
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "path \"{text}\" is not a JSON pointer: it must start with '/'"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    token.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => {
                        return Err(format!(
                            "path \"{text}\" is not a JSON pointer: '~' must be followed by '0' or '1'"
                        ));
                    }
                }
            }
            tokens.push(token);
        }
        Ok(Self {
            text: text.to_string(),
            tokens,
        })
    }

    /// True if `self` is a proper prefix of `other` (`/a` of `/a/b`).
    fn is_proper_prefix_of(&self, other: &Pointer) -> bool {
        self.tokens.len() < other.tokens.len() && other.tokens.starts_with(&self.tokens)
    }
}

/// Applies the RFC 6902 patch `ops` (a JSON array of operations) to `target`.
///
/// Errors: a patch that is not an array of well-formed operations is
/// [`PatchError::MalformedOperation`] (400); an operation on a path that does not
/// exist is [`PatchError::OperationFailed`] and a failed `test` is
/// [`PatchError::TestFailed`] (422); each names the operation's index and path.
///
/// ```
/// use serde_json::json;
/// use strata_api::patch::json_patch;
/// let patched = json_patch(
///     &json!({"spec": {"replicas": 1}}),
///     &json!([{"op": "test", "path": "/spec/replicas", "value": 1},
///             {"op": "replace", "path": "/spec/replicas", "value": 3}]),
/// ).unwrap();
/// assert_eq!(patched, json!({"spec": {"replicas": 3}}));
/// ```
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let Value::Array(list) = ops else {
        return Err(PatchError::Decode {
            message: format!(
                "a json patch must be a JSON array of operations, not {}",
                type_name(ops)
            ),
        });
    };
    if list.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_JSON_PATCH_OPERATIONS,
            count: list.len(),
        });
    }
    let ops = list
        .iter()
        .enumerate()
        .map(|(index, op)| {
            decode_op(op).map_err(|message| PatchError::MalformedOperation { index, message })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut doc = target.clone();
    for (index, op) in ops.into_iter().enumerate() {
        let name = op.name();
        let path = op.path().text.clone();
        apply_op(&mut doc, op).map_err(|failure| match failure {
            Failure::Test => PatchError::TestFailed {
                index,
                path: path.clone(),
            },
            Failure::Other(message) => PatchError::OperationFailed {
                index,
                op: name.to_string(),
                path: path.clone(),
                message,
            },
        })?;
    }
    Ok(doc)
}

fn decode_op(op: &Value) -> Result<Op, String> {
    let Value::Object(op) = op else {
        return Err(format!(
            "an operation must be a JSON object, not {}",
            type_name(op)
        ));
    };
    let string = |field: &str| -> Result<&str, String> {
        match op.get(field) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(format!(
                "\"{field}\" must be a string, not {}",
                type_name(other)
            )),
            None => Err(format!("missing \"{field}\"")),
        }
    };
    let pointer = |field: &str| string(field).and_then(Pointer::parse);
    // A present `"value": null` is a value; only a missing member is an error.
    let value = || {
        op.get("value")
            .cloned()
            .ok_or_else(|| "missing \"value\"".to_string())
    };
    Ok(match string("op")? {
        "add" => Op::Add {
            path: pointer("path")?,
            value: value()?,
        },
        "remove" => Op::Remove {
            path: pointer("path")?,
        },
        "replace" => Op::Replace {
            path: pointer("path")?,
            value: value()?,
        },
        "move" => Op::Move {
            from: pointer("from")?,
            path: pointer("path")?,
        },
        "copy" => Op::Copy {
            from: pointer("from")?,
            path: pointer("path")?,
        },
        "test" => Op::Test {
            path: pointer("path")?,
            value: value()?,
        },
        other => {
            return Err(format!(
                "unknown op \"{other}\": supported ops are add, remove, replace, move, copy and test"
            ));
        }
    })
}

/// How an operation failed.
enum Failure {
    Test,
    Other(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Other(message)
    }
}

fn apply_op(doc: &mut Value, op: Op) -> Result<(), Failure> {
    match op {
        Op::Add { path, value } => add(doc, &path, value)?,
        Op::Remove { path } => {
            remove(doc, &path)?;
        }
        Op::Replace { path, value } => *get_mut(doc, &path.tokens)? = value,
        Op::Move { from, path } => {
            if from.is_proper_prefix_of(&path) {
                return Err(Failure::Other(format!(
                    "cannot move \"{}\" into one of its children",
                    from.text
                )));
            }
            let value = remove(doc, &from).map_err(|e| format!("from \"{}\": {e}", from.text))?;
            add(doc, &path, value)?;
        }
        Op::Copy { from, path } => {
            let value = get_mut(doc, &from.tokens)
                .map_err(|e| format!("from \"{}\": {e}", from.text))?
                .clone();
            add(doc, &path, value)?;
        }
        Op::Test { path, value } => {
            if !json_equal(get_mut(doc, &path.tokens)?, &value) {
                return Err(Failure::Test);
            }
        }
    }
    Ok(())
}

/// The value at `tokens`, or why there is none.
fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut current = doc;
    for (depth, token) in tokens.iter().enumerate() {
        current = match current {
            Value::Object(map) => map.get_mut(token),
            Value::Array(list) => {
                let len = list.len();
                let i = array_index(token, len).filter(|&i| i < len);
                i.and_then(|i| list.get_mut(i))
            }
            _ => None,
        }
        .ok_or_else(|| missing(tokens, depth))?;
    }
    Ok(current)
}

fn missing(tokens: &[String], depth: usize) -> String {
    let at: String = tokens[..=depth]
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect();
    format!("no value at \"{at}\"")
}

/// An array index: `0` or digits without a leading zero. `-` (past the end) is
/// handled by the callers that accept it.
fn array_index(token: &str, len: usize) -> Option<usize> {
    if token == "-" {
        return Some(len);
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if valid { token.parse().ok() } else { None }
}

/// Splits a non-root path into its parent container and last token.
fn parent<'a>(doc: &'a mut Value, path: &'a Pointer) -> Result<(&'a mut Value, &'a str), String> {
    let (last, parents) = path
        .tokens
        .split_last()
        .ok_or_else(|| "the root cannot be removed".to_string())?;
    Ok((get_mut(doc, parents)?, last))
}

fn add(doc: &mut Value, path: &Pointer, value: Value) -> Result<(), String> {
    if path.tokens.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (container, last) = parent(doc, path)?;
    match container {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
            Ok(())
        }
        Value::Array(list) => {
            let len = list.len();
            match array_index(last, len) {
                Some(i) if i <= len => {
                    list.insert(i, value);
                    Ok(())
                }
                _ => Err(format!(
                    "array index \"{last}\" is out of range for an array of {len} elements"
                )),
            }
        }
        other => Err(format!("cannot add a member to a {}", type_name(other))),
    }
}

fn remove(doc: &mut Value, path: &Pointer) -> Result<Value, String> {
    let (container, last) = parent(doc, path)?;
    let removed = match container {
        Value::Object(map) => map.remove(last),
        Value::Array(list) => {
            let len = list.len();
            // `-` names no element, so it cannot be removed.
            match array_index(last, len) {
                Some(i) if i < len && last != "-" => Some(list.remove(i)),
                _ => None,
            }
        }
        _ => None,
    };
    removed.ok_or_else(|| format!("no value at \"{}\"", path.text))
}

/// Equality as RFC 6902 `test` defines it: numbers compare by value (`1` equals
/// `1.0`), objects regardless of member order.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => objects_equal(x, y),
        _ => a == b,
    }
}

fn objects_equal(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len()
        && x.iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patch(doc: Value, ops: Value) -> Result<Value, PatchError> {
        json_patch(&doc, &ops)
    }

    // RFC 6902 appendix A.1–A.16, the ones that apply.

    #[test]
    fn a1_add_object_member() {
        let got = patch(
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux"}]),
        );
        assert_eq!(got.unwrap(), json!({"baz": "qux", "foo": "bar"}));
    }

    #[test]
    fn a2_add_array_element() {
        let got = patch(
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
        );
        assert_eq!(got.unwrap(), json!({"foo": ["bar", "qux", "baz"]}));
    }

    #[test]
    fn a3_remove_object_member() {
        let got = patch(
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "remove", "path": "/baz"}]),
        );
        assert_eq!(got.unwrap(), json!({"foo": "bar"}));
    }

    #[test]
    fn a4_remove_array_element() {
        let got = patch(
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/1"}]),
        );
        assert_eq!(got.unwrap(), json!({"foo": ["bar", "baz"]}));
    }

    #[test]
    fn a5_replace_value() {
        let got = patch(
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
        );
        assert_eq!(got.unwrap(), json!({"baz": "boo", "foo": "bar"}));
    }

    #[test]
    fn a6_move_value() {
        let got = patch(
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
        );
        assert_eq!(
            got.unwrap(),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
        );
    }

    #[test]
    fn a7_move_array_element() {
        let got = patch(
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
        );
        assert_eq!(
            got.unwrap(),
            json!({"foo": ["all", "cows", "eat", "grass"]})
        );
    }

    #[test]
    fn a8_test_success() {
        let doc = json!({"baz": "qux", "foo": ["a", 2, "c"]});
        let got = patch(
            doc.clone(),
            json!([
                {"op": "test", "path": "/baz", "value": "qux"},
                {"op": "test", "path": "/foo/1", "value": 2}
            ]),
        );
        assert_eq!(got.unwrap(), doc);
    }

    #[test]
    fn a9_test_failure_is_422_naming_index_and_path() {
        let err = patch(
            json!({"baz": "qux"}),
            json!([{"op": "test", "path": "/baz", "value": "bar"}]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PatchError::TestFailed {
                index: 0,
                path: "/baz".into()
            }
        );
        assert_eq!(err.http_status(), 422);
        assert!(
            err.to_string().contains("operation 0 (test) at \"/baz\""),
            "{err}"
        );
    }

    #[test]
    fn a10_add_nested_member() {
        let got = patch(
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
        );
        assert_eq!(
            got.unwrap(),
            json!({"foo": "bar", "child": {"grandchild": {}}})
        );
    }

    #[test]
    fn a11_ignores_unrecognized_members() {
        let got = patch(
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
        );
        assert_eq!(got.unwrap(), json!({"foo": "bar", "baz": "qux"}));
    }

    #[test]
    fn a12_add_to_nonexistent_target_is_422() {
        let err = patch(
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 422);
        assert!(
            matches!(&err, PatchError::OperationFailed { index: 0, op, path, .. } if op == "add" && path == "/baz/bat"),
            "{err:?}"
        );
    }

    #[test]
    fn a14_escape_ordering() {
        let doc = json!({"/": 9, "~1": 10});
        let got = patch(
            doc.clone(),
            json!([{"op": "test", "path": "/~01", "value": 10}]),
        );
        assert_eq!(got.unwrap(), doc);
        let got = patch(doc, json!([{"op": "remove", "path": "/~1"}]));
        assert_eq!(got.unwrap(), json!({"~1": 10}));
    }

    #[test]
    fn a15_comparing_strings_and_numbers() {
        let err = patch(
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": "10"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::TestFailed { .. }));
    }

    #[test]
    fn a16_add_array_value_and_dash_appends() {
        let got = patch(
            json!({"foo": ["bar"]}),
            json!([
                {"op": "add", "path": "/foo/-", "value": ["abc", "def"]},
                {"op": "add", "path": "/foo/-", "value": "end"}
            ]),
        );
        assert_eq!(got.unwrap(), json!({"foo": ["bar", ["abc", "def"], "end"]}));
    }

    #[test]
    fn copy_replace_whole_document_and_numeric_equality() {
        let got = patch(
            json!({"a": {"b": 1}, "n": 1}),
            json!([
                {"op": "copy", "from": "/a", "path": "/c"},
                {"op": "test", "path": "/n", "value": 1.0},
                {"op": "test", "path": "/c", "value": {"b": 1}}
            ]),
        );
        assert_eq!(got.unwrap(), json!({"a": {"b": 1}, "c": {"b": 1}, "n": 1}));
        let got = patch(
            json!({"a": 1}),
            json!([{"op": "add", "path": "", "value": [1]}]),
        );
        assert_eq!(got.unwrap(), json!([1]));
        let got = patch(
            json!({"a": null}),
            json!([{"op": "replace", "path": "/a", "value": null}]),
        );
        assert_eq!(got.unwrap(), json!({"a": null}));
    }

    #[test]
    fn failures_on_missing_paths_and_bad_indices_are_422() {
        let doc = json!({"spec": {"containers": [{"name": "web"}]}});
        for (ops, index, path) in [
            (
                json!([{"op": "remove", "path": "/spec/replicas"}]),
                0,
                "/spec/replicas",
            ),
            (
                json!([{"op": "test", "path": "/spec", "value": {"containers": [{"name": "web"}]}},
                       {"op": "replace", "path": "/spec/containers/1/image", "value": "x"}]),
                1,
                "/spec/containers/1/image",
            ),
            (
                json!([{"op": "add", "path": "/spec/containers/2", "value": {}}]),
                0,
                "/spec/containers/2",
            ),
            (
                json!([{"op": "add", "path": "/spec/containers/01", "value": {}}]),
                0,
                "/spec/containers/01",
            ),
            (
                json!([{"op": "remove", "path": "/spec/containers/-"}]),
                0,
                "/spec/containers/-",
            ),
            (
                json!([{"op": "move", "from": "/nope", "path": "/x"}]),
                0,
                "/x",
            ),
            (
                json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}]),
                0,
                "/spec/inner",
            ),
        ] {
            let err = patch(doc.clone(), ops.clone()).unwrap_err();
            assert_eq!(err.http_status(), 422, "{ops}: {err}");
            match &err {
                PatchError::OperationFailed {
                    index: i, path: p, ..
                } => {
                    assert_eq!((*i, p.as_str()), (index, path), "{ops}");
                }
                other => panic!("{ops}: {other:?}"),
            }
        }
        // A failing operation applies nothing.
        let err = patch(
            doc,
            json!([{"op": "add", "path": "/a", "value": 1}, {"op": "remove", "path": "/b"}]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no value at \"/b\""), "{err}");
    }

    #[test]
    fn too_many_operations_are_413() {
        let ops =
            vec![json!({"op": "test", "path": "/a", "value": 1}); MAX_JSON_PATCH_OPERATIONS + 1];
        let err = patch(json!({"a": 1}), Value::Array(ops)).unwrap_err();
        assert_eq!(err.http_status(), 413);
        let ops = vec![json!({"op": "test", "path": "/a", "value": 1}); MAX_JSON_PATCH_OPERATIONS];
        assert!(patch(json!({"a": 1}), Value::Array(ops)).is_ok());
    }

    #[test]
    fn malformed_patches_are_400() {
        for (ops, message) in [
            (json!({"op": "add"}), "must be a JSON array"),
            (
                json!([{"op": "frobnicate", "path": "/a"}]),
                "unknown op \"frobnicate\"",
            ),
            (json!([{"path": "/a"}]), "missing \"op\""),
            (json!([{"op": "add", "path": "/a"}]), "missing \"value\""),
            (json!([{"op": "move", "path": "/a"}]), "missing \"from\""),
            (
                json!([{"op": "remove", "path": "a"}]),
                "must start with '/'",
            ),
            (
                json!([{"op": "remove", "path": "/a~2"}]),
                "'~' must be followed",
            ),
            (json!(["add"]), "must be a JSON object"),
        ] {
            let err = patch(json!({"a": 1}), ops.clone()).unwrap_err();
            assert_eq!(err.http_status(), 400, "{ops}: {err}");
            assert!(err.to_string().contains(message), "{ops}: {err}");
        }
    }
}
