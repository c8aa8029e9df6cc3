//! `authorization.k8s.io/v1` SelfSubjectAccessReview ("may I do this?", what `kubectl
//! auth can-i` asks) and SelfSubjectRulesReview ("what may I do here?", `kubectl auth
//! can-i --list`), answered from the same decision the request path makes.

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};

use super::{ApiState, object_response, parse_body};
use crate::auth::rbac::Policy;
use crate::auth::{
    Decision, Identity, RequestAttributes, ResourceAttributes, Verb, authorize_with,
};
use crate::status::ApiError;

/// The group of the review kinds.
pub(crate) const GROUP: &str = "authorization.k8s.io";

/// Whether `attrs` is a create of one of the review kinds this module answers.
pub(crate) fn is_review(attrs: &ResourceAttributes) -> bool {
    attrs.api_group == GROUP
        && attrs.api_version == "v1"
        && attrs.verb == Verb::Create
        && attrs.subresource.is_none()
        && matches!(
            attrs.resource.as_str(),
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
        )
}

/// Answers the review in `body` for `identity`.
pub(crate) async fn handle(
    state: &ApiState,
    attrs: &ResourceAttributes,
    identity: Option<&Identity>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let identity =
        identity.ok_or_else(|| ApiError::Internal("the request carries no identity".into()))?;
    let mut review = parse_body(headers, body)?;
    let policy = match &state.rbac {
        Some(cache) => Some(cache.fresh_snapshot().await),
        None => None,
    };
    let status = if attrs.resource == "selfsubjectaccessreviews" {
        access(identity, &review["spec"], policy.as_deref())?
    } else {
        rules(identity, &review["spec"], policy.as_deref())?
    };
    review["status"] = status;
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!(if attrs.resource == "selfsubjectaccessreviews" {
        "SelfSubjectAccessReview"
    } else {
        "SelfSubjectRulesReview"
    });
    Ok(object_response(StatusCode::CREATED, &review, &[]))
}

fn invalid(kind: &str, field: &str, detail: &str) -> ApiError {
    ApiError::Invalid {
        kind: kind.into(),
        group: GROUP.into(),
        name: String::new(),
        causes: vec![strata_api::FieldError::required(field, detail)],
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn access(identity: &Identity, spec: &Value, policy: Option<&Policy>) -> Result<Value, ApiError> {
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    let attrs = if resource.is_object() {
        let verb = text(&resource["verb"]);
        let Some(verb) = Verb::parse(&verb) else {
            // A verb the request path never produces (escalate, bind, impersonate…):
            // answer from RBAC alone.
            let r = resource_attributes(resource, Verb::Get);
            let allowed = identity.in_group(crate::auth::MASTERS_GROUP)
                || policy.is_some_and(|p| p.allows_verb(identity, &r, &verb));
            return Ok(json!({"allowed": allowed}));
        };
        RequestAttributes::Resource(resource_attributes(resource, verb))
    } else if non_resource.is_object() {
        RequestAttributes::NonResource {
            verb: text(&non_resource["verb"]),
            path: text(&non_resource["path"]),
        }
    } else {
        return Err(invalid(
            "SelfSubjectAccessReview",
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    Ok(match authorize_with(identity, &attrs, policy) {
        Decision::Allow | Decision::AllowIf(_) => json!({"allowed": true}),
        // RBAC says no without a reason; kubectl prints a reason after "no - ".
        Decision::Deny(_) => json!({"allowed": false}),
    })
}

fn resource_attributes(resource: &Value, verb: Verb) -> ResourceAttributes {
    let optional = |field: &str| Some(text(&resource[field])).filter(|s| !s.is_empty());
    ResourceAttributes {
        verb,
        api_group: text(&resource["group"]),
        api_version: text(&resource["version"]),
        resource: text(&resource["resource"]),
        subresource: optional("subresource"),
        namespace: optional("namespace"),
        name: optional("name"),
    }
}

fn rules(identity: &Identity, spec: &Value, policy: Option<&Policy>) -> Result<Value, ApiError> {
    let namespace = spec["namespace"].as_str().filter(|ns| !ns.is_empty());
    let Some(namespace) = namespace else {
        return Err(invalid("SelfSubjectRulesReview", "spec.namespace", ""));
    };
    let masters = identity.in_group(crate::auth::MASTERS_GROUP);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    if masters {
        resource_rules.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        non_resource_rules.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    }
    for rule in policy
        .into_iter()
        .flat_map(|p| p.rules_for(identity, Some(namespace)))
    {
        let PolicyRule {
            verbs,
            api_groups,
            resources,
            resource_names,
            non_resource_urls,
        } = rule;
        if let Some(urls) = non_resource_urls.as_ref().filter(|u| !u.is_empty()) {
            non_resource_rules.push(json!({"verbs": verbs, "nonResourceURLs": urls}));
        } else {
            let mut entry =
                json!({"verbs": verbs, "apiGroups": api_groups, "resources": resources});
            if let Some(names) = resource_names.as_ref().filter(|n| !n.is_empty()) {
                entry["resourceNames"] = json!(names);
            }
            resource_rules.push(entry);
        }
    }
    Ok(json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    }))
}
