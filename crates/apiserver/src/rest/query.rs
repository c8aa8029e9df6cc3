//! Query parameters of resource requests, parsed once and checked: selectors,
//! pagination, resourceVersion semantics, watch options, dryRun, fieldValidation,
//! delete options.

use strata_api::{FieldValidation, Selector};

use crate::status::ApiError;

/// `resourceVersionMatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionMatch {
    /// Not given.
    #[default]
    Unset,
    /// At least this recent.
    NotOlderThan,
    /// Exactly this revision.
    Exact,
}

/// A field selector requirement: `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// `metadata.name`, `status.phase`, …
    pub field: String,
    /// The value compared with.
    pub value: String,
    /// True for `!=`.
    pub negated: bool,
}

/// The parsed query.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `labelSelector`.
    pub labels: Selector,
    /// `fieldSelector`.
    pub fields: Vec<FieldRequirement>,
    /// `limit` (0 = none).
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion` (None when absent or empty).
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub version_match: VersionMatch,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `force` (server-side apply).
    pub force: bool,
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation_policy: Option<String>,
}

fn bool_param(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "{name}: invalid boolean {value:?}"
        ))),
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{name}: {value:?} is not a valid number")))
}

/// Parses `fieldSelector`.
pub fn parse_field_selector(text: &str) -> Result<Vec<FieldRequirement>, ApiError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, v, false)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, v, false)
        } else {
            return Err(ApiError::BadRequest(format!(
                "invalid field selector: {part:?}: expected field=value or field!=value"
            )));
        };
        out.push(FieldRequirement {
            field: field.trim().to_string(),
            value: value.trim().to_string(),
            negated,
        });
    }
    Ok(out)
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Query::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let value = value.as_ref();
            match key.as_ref() {
                "labelSelector" => {
                    q.labels = Selector::parse(value)
                        .map_err(|e| ApiError::BadRequest(format!("invalid labelSelector: {e}")))?
                }
                "fieldSelector" => q.fields = parse_field_selector(value)?,
                "limit" => q.limit = Some(number::<usize>("limit", value)?).filter(|l| *l > 0),
                "continue" => q.continue_token = Some(value.to_string()).filter(|c| !c.is_empty()),
                "resourceVersion" => {
                    q.resource_version = Some(value.to_string()).filter(|v| !v.is_empty())
                }
                "resourceVersionMatch" => {
                    q.version_match = match value {
                        "" => VersionMatch::Unset,
                        "NotOlderThan" => VersionMatch::NotOlderThan,
                        "Exact" => VersionMatch::Exact,
                        other => {
                            return Err(ApiError::BadRequest(format!(
                                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                            )));
                        }
                    }
                }
                "allowWatchBookmarks" => q.bookmarks = bool_param("allowWatchBookmarks", value)?,
                "timeoutSeconds" => q.timeout_seconds = Some(number("timeoutSeconds", value)?),
                "sendInitialEvents" => {
                    q.send_initial_events = Some(bool_param("sendInitialEvents", value)?)
                }
                "dryRun" => {
                    q.dry_run = match value {
                        "All" => true,
                        "" => false,
                        other => {
                            return Err(ApiError::BadRequest(format!(
                                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                            )));
                        }
                    }
                }
                "fieldValidation" => {
                    q.field_validation = FieldValidation::parse(value).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "fieldValidation: Unsupported value: {value:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                        ))
                    })?
                }
                "fieldManager" => q.field_manager = Some(value.to_string()),
                "force" => q.force = bool_param("force", value)?,
                "gracePeriodSeconds" => {
                    q.grace_period_seconds = Some(number("gracePeriodSeconds", value)?)
                }
                "propagationPolicy" => q.propagation_policy = Some(value.to_string()),
                // watch is already in the verb; pretty, timeout and others are accepted.
                _ => {}
            }
        }
        if q.version_match != VersionMatch::Unset && q.resource_version.is_none() {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_values_are_400() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&fieldSelector=status.phase%21%3DRunning&limit=2&continue=abc&resourceVersion=5&resourceVersionMatch=NotOlderThan&dryRun=All&fieldValidation=Warn&watch=true",
        ))
        .unwrap();
        assert_eq!(q.limit, Some(2));
        assert!(q.dry_run);
        assert_eq!(q.field_validation, FieldValidation::Warn);
        assert_eq!(q.fields[0].field, "status.phase");
        assert!(q.fields[0].negated);
        assert_eq!(q.version_match, VersionMatch::NotOlderThan);
        for bad in [
            "limit=x",
            "dryRun=Some",
            "fieldValidation=strict",
            "labelSelector=a%20in%20b",
            "resourceVersionMatch=Exact",
        ] {
            assert!(Query::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
