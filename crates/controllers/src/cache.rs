//! Reading the controllers' watch caches: one namespace's objects, and which owners an
//! event on a child (a pod, a replica set) concerns.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::pods;

/// The objects of `namespace` in a cache snapshot.
pub fn in_namespace<'a, K: Resource>(cached: &'a [Arc<K>], namespace: &str) -> Vec<&'a K> {
    cached
        .iter()
        .map(Arc::as_ref)
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .collect()
}

/// The owners of kind `K` an event on `child` concerns: its controller when that is a
/// `K`, else (an orphan) every `K` of its namespace whose selector (`selector_of`)
/// matches it. A child controlled by another kind concerns none.
pub fn owners_of<K>(
    owners: &Store<K>,
    child: &ObjectMeta,
    selector_of: impl Fn(&K) -> Option<&LabelSelector>,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let namespace = child.namespace.clone().unwrap_or_default();
    if let Some(owner) = pods::controller_of(child) {
        if owner.kind == K::kind(&()) {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let labels = pods::labels(child);
    owners
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace.as_str()))
        .filter(|o| {
            selector_of(o)
                .and_then(pods::selector)
                .is_some_and(|s| s.matches(&labels))
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}
