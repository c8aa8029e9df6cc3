//! The strategic merge patch schema of the built-in kinds Strata serves: which lists
//! merge (by which key, or as a set) instead of being replaced. Kubernetes declares
//! these as `patchStrategy:"merge" patchMergeKey:"…"` struct tags in k8s.io/api's
//! `types.go` files, published in OpenAPI as `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key`.
//!
//! Only the paths that lead to such lists are written down; every other field
//! patches as in a JSON merge patch (maps merge, lists are replaced). The
//! `retainKeys` strategy needs no entry: the `$retainKeys` directive that kubectl
//! sends for it is obeyed wherever it appears.

/// How a list field patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMerge {
    /// The patch's list replaces the stored one (also used for fields that are not
    /// lists).
    Atomic,
    /// A list of scalars merged as a set (`metadata.finalizers`).
    Set,
    /// A list of objects merged element by element, matched by this field
    /// (`containers` by `name`).
    ByKey(&'static str),
}

/// One field of a [`TypeSchema`].
#[derive(Debug)]
pub struct FieldSchema {
    /// The JSON name (`containers`).
    pub name: &'static str,
    /// How the field patches if it is a list.
    pub list: ListMerge,
    /// The schema of the value, or of each list element, when it has fields that
    /// patch specially.
    pub schema: Option<&'static TypeSchema>,
}

/// The fields of one object type that patch differently from a merge patch, or
/// lead to such fields.
#[derive(Debug)]
pub struct TypeSchema {
    /// The Kubernetes type name (`PodSpec`), for messages.
    pub name: &'static str,
    /// The fields.
    pub fields: &'static [FieldSchema],
}

impl TypeSchema {
    /// The field called `name`, if it patches specially.
    pub fn field(&self, name: &str) -> Option<&'static FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Resolves a dotted path with `[*]` for list elements
    /// (`spec.template.spec.containers[*].env`) to its field.
    ///
    /// ```
    /// use strata_api::patch::{ListMerge, schema_for};
    /// let deployment = schema_for("apps", "Deployment").unwrap();
    /// let env = deployment.resolve("spec.template.spec.containers[*].env").unwrap();
    /// assert_eq!(env.list, ListMerge::ByKey("name"));
    /// ```
    pub fn resolve(&self, path: &str) -> Option<&'static FieldSchema> {
        let mut schema = self;
        let mut found = None;
        for segment in path.split('.') {
            let field = schema.field(segment.strip_suffix("[*]").unwrap_or(segment))?;
            found = Some(field);
            if let Some(next) = field.schema {
                schema = next;
            }
        }
        found
    }
}

/// A struct-valued field.
const fn object(name: &'static str, schema: &'static TypeSchema) -> FieldSchema {
    FieldSchema {
        name,
        list: ListMerge::Atomic,
        schema: Some(schema),
    }
}

/// A list of objects merged by `key`, whose elements have no special fields.
const fn by_key(name: &'static str, key: &'static str) -> FieldSchema {
    FieldSchema {
        name,
        list: ListMerge::ByKey(key),
        schema: None,
    }
}

/// A list of `schema` objects merged by `key`.
const fn by_key_of(
    name: &'static str,
    key: &'static str,
    schema: &'static TypeSchema,
) -> FieldSchema {
    FieldSchema {
        name,
        list: ListMerge::ByKey(key),
        schema: Some(schema),
    }
}

/// A list of scalars merged as a set.
const fn set(name: &'static str) -> FieldSchema {
    FieldSchema {
        name,
        list: ListMerge::Set,
        schema: None,
    }
}

static OBJECT_META: TypeSchema = TypeSchema {
    name: "ObjectMeta",
    fields: &[set("finalizers"), by_key("ownerReferences", "uid")],
};

/// `Container` and `EphemeralContainer` (whose `resizePolicy` is atomic).
static CONTAINER: TypeSchema = TypeSchema {
    name: "Container",
    fields: &[
        by_key("ports", "containerPort"),
        by_key("env", "name"),
        by_key("volumeMounts", "mountPath"),
        by_key("volumeDevices", "devicePath"),
    ],
};

/// `tolerations`, `readinessGates` and the affinity terms are atomic.
static POD_SPEC: TypeSchema = TypeSchema {
    name: "PodSpec",
    fields: &[
        by_key("volumes", "name"),
        by_key_of("initContainers", "name", &CONTAINER),
        by_key_of("containers", "name", &CONTAINER),
        by_key_of("ephemeralContainers", "name", &CONTAINER),
        by_key("imagePullSecrets", "name"),
        by_key("hostAliases", "ip"),
        by_key("topologySpreadConstraints", "topologyKey"),
        by_key("resourceClaims", "name"),
        by_key("schedulingGates", "name"),
    ],
};

/// `containerStatuses` and friends are atomic.
static POD_STATUS: TypeSchema = TypeSchema {
    name: "PodStatus",
    fields: &[
        by_key("conditions", "type"),
        by_key("podIPs", "ip"),
        by_key("hostIPs", "ip"),
        by_key("resourceClaimStatuses", "name"),
    ],
};

static POD_TEMPLATE_SPEC: TypeSchema = TypeSchema {
    name: "PodTemplateSpec",
    fields: &[object("metadata", &OBJECT_META), object("spec", &POD_SPEC)],
};

/// Deployment, ReplicaSet, DaemonSet, StatefulSet and Job specs: their pod template.
static WORKLOAD_SPEC: TypeSchema = TypeSchema {
    name: "WorkloadSpec",
    fields: &[object("template", &POD_TEMPLATE_SPEC)],
};

/// Any status whose only special field is `conditions`, merged by `type`.
static CONDITIONS_STATUS: TypeSchema = TypeSchema {
    name: "Status",
    fields: &[by_key("conditions", "type")],
};

static SERVICE_SPEC: TypeSchema = TypeSchema {
    name: "ServiceSpec",
    fields: &[by_key("ports", "port")],
};

static NODE_SPEC: TypeSchema = TypeSchema {
    name: "NodeSpec",
    fields: &[set("podCIDRs")],
};

static NODE_STATUS: TypeSchema = TypeSchema {
    name: "NodeStatus",
    fields: &[by_key("conditions", "type"), by_key("addresses", "type")],
};

/// Kinds whose only special fields are in `metadata`: ConfigMap, Secret, Endpoints
/// (`subsets` is atomic), Event, Lease, EndpointSlice (`endpoints` and `ports` are atomic).
static META_ONLY: TypeSchema = TypeSchema {
    name: "Object",
    fields: &[object("metadata", &OBJECT_META)],
};

static POD: TypeSchema = TypeSchema {
    name: "Pod",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &POD_SPEC),
        object("status", &POD_STATUS),
    ],
};

static WORKLOAD: TypeSchema = TypeSchema {
    name: "Workload",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &WORKLOAD_SPEC),
        object("status", &CONDITIONS_STATUS),
    ],
};

static SERVICE: TypeSchema = TypeSchema {
    name: "Service",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &SERVICE_SPEC),
        object("status", &CONDITIONS_STATUS),
    ],
};

static NODE: TypeSchema = TypeSchema {
    name: "Node",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &NODE_SPEC),
        object("status", &NODE_STATUS),
    ],
};

static NAMESPACE: TypeSchema = TypeSchema {
    name: "Namespace",
    fields: &[
        object("metadata", &OBJECT_META),
        object("status", &CONDITIONS_STATUS),
    ],
};

static SERVICE_ACCOUNT: TypeSchema = TypeSchema {
    name: "ServiceAccount",
    fields: &[object("metadata", &OBJECT_META), by_key("secrets", "name")],
};

/// The patch schema of a built-in kind; `None` for kinds without one (custom
/// resources, Strata's own groups), for which strategic merge patch is refused.
pub fn schema_for(group: &str, kind: &str) -> Option<&'static TypeSchema> {
    Some(match (group, kind) {
        ("", "Pod") => &POD,
        ("", "Service") => &SERVICE,
        ("", "Node") => &NODE,
        ("", "Namespace") => &NAMESPACE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "Endpoints" | "ConfigMap" | "Secret" | "Event")
        | ("coordination.k8s.io", "Lease")
        | ("discovery.k8s.io", "EndpointSlice")
        | ("events.k8s.io", "Event")
        // RBAC's rules and subjects are atomic lists.
        | ("rbac.authorization.k8s.io", _) => &META_ONLY,
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet") | ("batch", "Job") => {
            &WORKLOAD
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::RESOURCES;

    #[test]
    fn every_served_resource_has_a_schema() {
        for r in RESOURCES.iter().filter(|r| !r.is_strata_own()) {
            assert!(schema_for(r.group, r.kind).is_some(), "{}", r.kind);
        }
        assert!(schema_for("serverless.strata.dev", "Function").is_none());
    }

    #[test]
    fn paths_resolve_through_templates() {
        let job = schema_for("batch", "Job").unwrap();
        let resolve = |path| job.resolve(path).map(|f| f.list);
        assert_eq!(
            resolve("spec.template.spec.containers"),
            Some(ListMerge::ByKey("name"))
        );
        assert_eq!(
            resolve("spec.template.spec.initContainers[*].ports"),
            Some(ListMerge::ByKey("containerPort"))
        );
        assert_eq!(
            resolve("spec.template.metadata.finalizers"),
            Some(ListMerge::Set)
        );
        assert_eq!(resolve("status.conditions"), Some(ListMerge::ByKey("type")));
        assert_eq!(resolve("spec.template.spec.tolerations"), None);
        let node = schema_for("", "Node").unwrap();
        assert_eq!(
            node.resolve("status.addresses").map(|f| f.list),
            Some(ListMerge::ByKey("type"))
        );
    }
}
