//! TaintToleration: a pod may only land on a node whose `NoSchedule` and `NoExecute` taints
//! it tolerates (`PreferNoSchedule` only lowers the score, see `score::taints`).

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::{Reason, Verdict};
use crate::snapshot::{NodeAttrs, PodInfo};

/// Whether `toleration` tolerates `taint`, like core/v1 `Toleration.ToleratesTaint`: the
/// effect must match (an empty effect matches all), the key must match (an empty key with
/// `Exists` matches every key), and the value must be equal unless the operator is `Exists`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// TaintToleration filter: the first untolerated `NoSchedule`/`NoExecute` taint rejects.
pub fn filter(pod: &PodInfo, node: &NodeAttrs) -> Verdict {
    let untolerated = node.taints.iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !pod.tolerations.iter().any(|t| tolerates(t, taint))
    });
    match untolerated {
        None => Ok(()),
        Some(taint) => Err(vec![Reason::UntoleratedTaint {
            key: taint.key.clone(),
            value: taint.value.clone().unwrap_or_default(),
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod, taint, toleration};

    #[test]
    fn toleration_matching() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &toleration("dedicated", "Equal", "gpu", "NoSchedule"),
            &t
        ));
        assert!(tolerates(&toleration("dedicated", "", "gpu", ""), &t));
        assert!(tolerates(&toleration("dedicated", "Exists", "", ""), &t));
        assert!(
            tolerates(&toleration("", "Exists", "", ""), &t),
            "tolerates everything"
        );
        assert!(!tolerates(&toleration("dedicated", "Equal", "cpu", ""), &t));
        assert!(!tolerates(
            &toleration("dedicated", "Exists", "", "NoExecute"),
            &t
        ));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &t));
        assert!(
            !tolerates(&toleration("", "Equal", "", ""), &t),
            "empty key needs Exists"
        );
    }

    #[test]
    fn filter_reports_the_first_untolerated_taint() {
        let mut n = node("n1", &[]);
        n.taints = vec![
            taint("soft", "", "PreferNoSchedule"),
            taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),
            taint("evict", "now", "NoExecute"),
        ];
        let mut p = pod("p", 0, 0);
        let err = filter(&p, &n).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
        );
        p.tolerations = vec![toleration(
            "node-role.kubernetes.io/control-plane",
            "Exists",
            "",
            "NoSchedule",
        )];
        let err = filter(&p, &n).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "node(s) had untolerated taint {evict: now}"
        );
        p.tolerations
            .push(toleration("evict", "Equal", "now", "NoExecute"));
        assert_eq!(filter(&p, &n), Ok(()), "PreferNoSchedule never rejects");
    }
}
