//! The status conditions a Terminating namespace reports while its content goes, as
//! Kubernetes' namespace controller words them (`kubectl describe namespace` shows
//! them): what is left, and which finalizers hold it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Content still in a namespace being emptied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Remaining {
    /// Objects left, per resource plural.
    pub resources: BTreeMap<&'static str, usize>,
    /// Objects held by each finalizer.
    pub finalizers: BTreeMap<String, usize>,
}

impl Remaining {
    /// Counts one object of `resource` that is still there, held by `finalizers`.
    pub fn count(&mut self, resource: &'static str, finalizers: &[String]) {
        *self.resources.entry(resource).or_default() += 1;
        for finalizer in finalizers {
            *self.finalizers.entry(finalizer.clone()).or_default() += 1;
        }
    }

    /// Nothing is left.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}

fn condition(type_: &str, reason: &str, message: Option<String>) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.to_string(),
        status: if message.is_some() { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message,
        last_transition_time: None,
    }
}

/// The `NamespaceContentRemaining` and `NamespaceFinalizersRemaining` conditions for
/// `remaining`.
pub fn conditions(remaining: &Remaining) -> Vec<NamespaceCondition> {
    let content = (!remaining.resources.is_empty()).then(|| {
        let parts: Vec<String> = remaining
            .resources
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        format!("Some resources are remaining: {}", parts.join(", "))
    });
    let finalizers = (!remaining.finalizers.is_empty()).then(|| {
        let parts: Vec<String> = remaining
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        format!(
            "Some content in the namespace has finalizers remaining: {}",
            parts.join(", ")
        )
    });
    vec![
        condition(
            "NamespaceContentRemaining",
            if content.is_some() {
                "SomeResourcesRemain"
            } else {
                "ContentRemoved"
            },
            content,
        ),
        condition(
            "NamespaceFinalizersRemaining",
            if finalizers.is_some() {
                "SomeFinalizersRemain"
            } else {
                "ContentHasNoFinalizers"
            },
            finalizers,
        ),
    ]
}

/// The namespace's conditions with `wanted` merged in, or `None` when they already
/// say the same (so an unchanged pass writes nothing). A condition whose status
/// changes gets `now` as its transition time.
pub fn merged(
    namespace: &Namespace,
    wanted: Vec<NamespaceCondition>,
    now: &Time,
) -> Option<Vec<NamespaceCondition>> {
    let mut current = namespace
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for mut want in wanted {
        match current.iter_mut().find(|c| c.type_ == want.type_) {
            Some(have) if have.status == want.status && have.message == want.message => {}
            Some(have) => {
                want.last_transition_time = if have.status == want.status {
                    have.last_transition_time.clone()
                } else {
                    Some(now.clone())
                };
                *have = want;
                changed = true;
            }
            None => {
                want.last_transition_time = Some(now.clone());
                current.push(want);
                changed = true;
            }
        }
    }
    changed.then_some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_name_what_is_left_and_what_holds_it() {
        let mut left = Remaining::default();
        left.count("configmaps", &["example.com/hold".to_string()]);
        left.count("pods", &[]);
        let wanted = conditions(&left);
        assert_eq!(
            wanted[0].message.as_deref(),
            Some(
                "Some resources are remaining: configmaps has 1 resource instances, pods has 1 resource instances"
            )
        );
        assert_eq!(wanted[1].status, "True");
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let ns = Namespace::default();
        let first = merged(&ns, wanted.clone(), &now);
        assert_eq!(first.as_ref().map(Vec::len), Some(2));
        let mut written = ns.clone();
        written.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            conditions: first,
            ..Default::default()
        });
        assert_eq!(merged(&written, wanted, &now), None);
        let done = merged(&written, conditions(&Remaining::default()), &now);
        assert!(done.is_some_and(|c| c.iter().all(|c| c.status == "False")));
    }
}
