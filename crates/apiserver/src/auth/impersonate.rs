//! User impersonation (`Impersonate-User`, `Impersonate-Group` headers; `kubectl --as`,
//! `--as-group`), as Kubernetes does it: the caller needs the `impersonate` verb on
//! `users`, `groups` or `serviceaccounts` naming each thing it impersonates, and the
//! request then runs as the impersonated identity — which is authorized on its own.

use http::HeaderMap;

use super::attributes::{ResourceAttributes, Verb};
use super::rbac::Policy;
use super::{AUTHENTICATED_GROUP, Identity, MASTERS_GROUP, serviceaccount};

/// The user header.
pub const USER_HEADER: &str = "impersonate-user";
/// The group header (repeated for several groups).
pub const GROUP_HEADER: &str = "impersonate-group";

/// Why an impersonation was refused: the resource and name the caller lacks
/// `impersonate` on, worded for a 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// The identity `caller` asks to act as, if the headers ask for one; `Err` when the
/// caller may not.
pub fn impersonated(
    caller: &Identity,
    headers: &HeaderMap,
    policy: Option<&Policy>,
) -> Option<Result<Identity, Refused>> {
    let user = headers
        .get(USER_HEADER)?
        .to_str()
        .ok()
        .unwrap_or_default()
        .to_string();
    let groups: Vec<String> = headers
        .get_all(GROUP_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    Some(check(caller, user, groups, policy))
}

fn check(
    caller: &Identity,
    user: String,
    mut groups: Vec<String>,
    policy: Option<&Policy>,
) -> Result<Identity, Refused> {
    if user.is_empty() {
        return Err(Refused("Impersonate-User must name a user".into()));
    }
    let may = |resource: &str, namespace: Option<&str>, name: &str| {
        let attrs = ResourceAttributes {
            verb: Verb::Get,
            api_group: String::new(),
            api_version: "v1".into(),
            resource: resource.into(),
            subresource: None,
            namespace: namespace.map(str::to_string),
            name: Some(name.into()),
        };
        caller.in_group(MASTERS_GROUP)
            || policy.is_some_and(|p| p.allows_verb(caller, &attrs, "impersonate"))
    };
    let refuse = |resource: &str, name: &str| {
        Refused(format!(
            "{resource} {name:?} is forbidden: User {:?} cannot impersonate resource {resource:?} in API group \"\"",
            caller.user
        ))
    };
    let account = user
        .strip_prefix(serviceaccount::USER_PREFIX)
        .and_then(|rest| rest.split_once(':'));
    match account {
        Some((namespace, name)) => {
            if !may("serviceaccounts", Some(namespace), name) {
                return Err(refuse("serviceaccounts", name));
            }
            // Kubernetes gives an impersonated service account its groups.
            for group in [
                serviceaccount::ALL_GROUP.to_string(),
                format!("{}:{namespace}", serviceaccount::ALL_GROUP),
            ] {
                if !groups.contains(&group) {
                    groups.push(group);
                }
            }
        }
        None => {
            if !may("users", None, &user) {
                return Err(refuse("users", &user));
            }
        }
    }
    for group in &groups {
        let implied = account.is_some() && group.starts_with(serviceaccount::ALL_GROUP);
        if !implied && !may("groups", None, group) {
            return Err(refuse("groups", group));
        }
    }
    if user != "system:anonymous" && !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.into());
    }
    Ok(Identity::new(user, groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(user: &str, groups: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(USER_HEADER, HeaderValue::from_str(user).unwrap());
        for g in groups {
            headers.append(GROUP_HEADER, HeaderValue::from_str(g).unwrap());
        }
        headers
    }

    #[test]
    fn masters_may_impersonate_and_others_may_not() {
        let admin = Identity::new("admin", [MASTERS_GROUP]);
        let who = impersonated(
            &admin,
            &headers("system:serviceaccount:team:dev", &[]),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(who.user, "system:serviceaccount:team:dev");
        assert!(who.in_group("system:serviceaccounts:team") && who.in_group(AUTHENTICATED_GROUP));
        assert!(!who.in_group(MASTERS_GROUP));
        let bob = impersonated(&admin, &headers("bob", &["devs"]), None)
            .unwrap()
            .unwrap();
        assert!(bob.in_group("devs"));

        let alice = Identity::new("alice", [AUTHENTICATED_GROUP]);
        let refused = impersonated(&alice, &headers("bob", &[]), Some(&Policy::default())).unwrap();
        assert!(
            matches!(refused, Err(Refused(m)) if m.contains("cannot impersonate resource \"users\""))
        );
        assert!(impersonated(&alice, &HeaderMap::new(), None).is_none());
    }
}
