//! Defaulting and validation of the RBAC kinds (`rbac.authorization.k8s.io/v1` Role,
//! ClusterRole, RoleBinding, ClusterRoleBinding), as Kubernetes' `rbac/validation`
//! checks them. Evaluating the rules is the API server's authorizer.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::field::FieldError;
use crate::kinds::Kind;

/// The API group of RBAC objects, which `roleRef.apiGroup` and user/group subjects name.
pub const GROUP: &str = "rbac.authorization.k8s.io";

fn validate_rules(rules: Option<&Vec<PolicyRule>>, namespaced: bool, errors: &mut Vec<FieldError>) {
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        if rule.verbs.is_empty() {
            errors.push(FieldError::required(
                at("verbs"),
                "verbs must contain at least one value",
            ));
        }
        let non_resource = rule
            .non_resource_urls
            .as_ref()
            .is_some_and(|u| !u.is_empty());
        let resources = rule.resources.as_ref().is_some_and(|r| !r.is_empty());
        if non_resource {
            if namespaced {
                errors.push(FieldError::invalid(
                    at("nonResourceURLs"),
                    format!("{:?}", rule.non_resource_urls.clone().unwrap_or_default()),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if resources || rule.api_groups.as_ref().is_some_and(|g| !g.is_empty()) {
                errors.push(FieldError::invalid(
                    at("nonResourceURLs"),
                    format!("{:?}", rule.non_resource_urls.clone().unwrap_or_default()),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if rule.api_groups.as_ref().is_none_or(Vec::is_empty) {
            errors.push(FieldError::required(
                at("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if !resources {
            errors.push(FieldError::required(
                at("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn default_subjects(subjects: Option<&mut Vec<Subject>>) {
    for subject in subjects.into_iter().flatten() {
        if subject.api_group.is_none() && matches!(subject.kind.as_str(), "User" | "Group") {
            subject.api_group = Some(GROUP.into());
        }
    }
}

fn validate_binding(
    role_ref: &RoleRef,
    subjects: Option<&Vec<Subject>>,
    namespaced: bool,
    errors: &mut Vec<FieldError>,
) {
    if role_ref.api_group != GROUP {
        errors.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &role_ref.api_group,
            &[GROUP],
        ));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&role_ref.kind.as_str()) {
        errors.push(FieldError::not_supported(
            "roleRef.kind",
            &role_ref.kind,
            kinds,
        ));
    }
    if role_ref.name.is_empty() {
        errors.push(FieldError::required("roleRef.name", ""));
    } else {
        errors.extend(path_segment(&role_ref.name, "roleRef.name"));
    }
    for (i, subject) in subjects.into_iter().flatten().enumerate() {
        let at = |field: &str| format!("subjects[{i}].{field}");
        if subject.name.is_empty() {
            errors.push(FieldError::required(at("name"), ""));
        }
        match subject.kind.as_str() {
            "ServiceAccount" => {
                if subject.api_group.as_deref().is_some_and(|g| !g.is_empty()) {
                    errors.push(FieldError::not_supported(
                        at("apiGroup"),
                        subject.api_group.as_deref(),
                        &[""],
                    ));
                }
                if !namespaced && subject.namespace.as_deref().is_none_or(str::is_empty) {
                    errors.push(FieldError::required(at("namespace"), ""));
                }
            }
            "User" | "Group" => {
                if subject.api_group.as_deref() != Some(GROUP) {
                    errors.push(FieldError::not_supported(
                        at("apiGroup"),
                        subject.api_group.as_deref(),
                        &[GROUP],
                    ));
                }
            }
            other => errors.push(FieldError::not_supported(
                at("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

/// RBAC names are path segments (`system:controller:x` is valid): anything but `.`,
/// `..` and names holding `/` or `%`.
pub fn path_segment(name: &str, field: &str) -> Vec<FieldError> {
    let detail = match name {
        "." | ".." => Some(format!("may not be '{name}'")),
        _ if name.contains('/') => Some("may not contain '/'".to_string()),
        _ if name.contains('%') => Some("may not contain '%'".to_string()),
        _ => None,
    };
    detail
        .map(|d| vec![FieldError::invalid(field, name, d)])
        .unwrap_or_default()
}

fn role_ref_immutable(new: &RoleRef, old: &RoleRef, errors: &mut Vec<FieldError>) {
    if new != old {
        errors.push(FieldError::invalid(
            "roleRef",
            format!("{}/{}", new.kind, new.name),
            "cannot change roleRef",
        ));
    }
}

impl Kind for Role {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        validate_rules(self.rules.as_ref(), true, errors);
    }
}

impl Kind for ClusterRole {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        validate_rules(self.rules.as_ref(), false, errors);
    }
}

impl Kind for RoleBinding {
    fn default(&mut self) {
        default_subjects(self.subjects.as_mut());
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        validate_binding(&self.role_ref, self.subjects.as_ref(), true, errors);
    }
    fn validate_update(&self, old: &Self, errors: &mut Vec<FieldError>) {
        role_ref_immutable(&self.role_ref, &old.role_ref, errors);
    }
}

impl Kind for ClusterRoleBinding {
    fn default(&mut self) {
        default_subjects(self.subjects.as_mut());
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        validate_binding(&self.role_ref, self.subjects.as_ref(), false, errors);
    }
    fn validate_update(&self, old: &Self, errors: &mut Vec<FieldError>) {
        role_ref_immutable(&self.role_ref, &old.role_ref, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of<K: Kind>(object: serde_json::Value) -> Vec<String> {
        let object: K = serde_json::from_value(object).unwrap();
        let mut errors = Vec::new();
        object.validate(&mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn roles_need_verbs_and_resources_and_namespaced_roles_no_urls() {
        let ok = errors_of::<Role>(serde_json::json!({"metadata": {}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}));
        assert!(ok.is_empty(), "{ok:?}");
        let bad = errors_of::<Role>(serde_json::json!({"metadata": {}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": []},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}));
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].contains("rules[0].verbs"), "{bad:?}");
        assert!(bad[1].contains("non-resource URLs"), "{bad:?}");
        let urls = errors_of::<ClusterRole>(serde_json::json!({"metadata": {}, "rules": [
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}));
        assert!(urls.is_empty(), "{urls:?}");
    }

    #[test]
    fn bindings_check_role_ref_and_subjects() {
        let bad = errors_of::<ClusterRoleBinding>(serde_json::json!({
            "metadata": {},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "x"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot"}, {"kind": "Robot", "name": "r"}],
        }));
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].contains("roleRef.kind"), "{bad:?}");
        assert!(bad[1].contains("subjects[0].namespace"), "{bad:?}");
        assert!(bad[2].contains("subjects[1].kind"), "{bad:?}");
        assert!(path_segment("system:controller:x", "metadata.name").is_empty());
        assert_eq!(path_segment("a/b", "metadata.name").len(), 1);
    }
}
