//! Rolling update arithmetic, as Kubernetes' `rolling.go` and `deployment/util` do it:
//! resolve maxSurge/maxUnavailable, how far the new set may grow, and how far the old
//! sets may shrink without dropping below the minimum available.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::view::{Set, oldest_first, total_available, total_replicas};

/// A rolling update parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// A string that is not `<n>%`.
    #[error("{field} {value:?} is neither an integer nor a percentage")]
    NotAPercentage {
        /// `maxSurge` or `maxUnavailable`.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A negative value.
    #[error("{field} must not be negative")]
    Negative {
        /// `maxSurge` or `maxUnavailable`.
        field: &'static str,
    },
    /// Both are literally 0: the rollout could never make progress.
    #[error("maxUnavailable may not be 0 when maxSurge is 0")]
    BothZero,
}

/// `value` of `total`: an integer as is, a percentage rounded up or down.
pub fn scaled(
    field: &'static str,
    value: &IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, StrategyError> {
    let result = match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(text) => {
            let percent: i64 = text
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| StrategyError::NotAPercentage {
                    field,
                    value: text.clone(),
                })?;
            let product = percent * i64::from(total);
            let quotient = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(quotient).unwrap_or(i32::MAX)
        }
    };
    if result < 0 {
        return Err(StrategyError::Negative { field });
    }
    Ok(result)
}

/// `(maxSurge, maxUnavailable)` for `desired` replicas: surge rounds up, unavailable
/// rounds down; when rounding makes both 0, one pod may be unavailable so the rollout
/// can proceed (Kubernetes' `ResolveFenceposts`). Both literally 0 is an error.
pub fn fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    desired: i32,
) -> Result<(i32, i32), StrategyError> {
    let zero = |v: &IntOrString| {
        matches!(v, IntOrString::Int(0)) || matches!(v, IntOrString::String(s) if s == "0%")
    };
    if zero(max_surge) && zero(max_unavailable) {
        return Err(StrategyError::BothZero);
    }
    let surge = scaled("maxSurge", max_surge, desired, true)?;
    let unavailable = scaled("maxUnavailable", max_unavailable, desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// The replicas the new set should have now (`NewRSNewReplicas` for rolling updates):
/// grow it as far as `desired + surge` total pods allow, never past `desired`.
pub fn new_set_replicas(desired: i32, surge: i32, all: &[Set], new: &Set) -> i32 {
    let current = total_replicas(all);
    let max_total = desired + surge;
    if current >= max_total {
        return new.replicas;
    }
    let up = (max_total - current).min(desired - new.replicas).max(0);
    new.replicas + up
}

/// Scales old sets down as far as availability allows (`reconcileOldReplicaSets`):
/// first their unavailable pods, then available ones down to `desired - unavailable`
/// available pods. Changes `old` in place and returns how many replicas it removed.
pub fn scale_down_old(
    desired: i32,
    max_unavailable: i32,
    new: Option<&Set>,
    old: &mut [Set],
) -> i32 {
    let old_total = total_replicas(old);
    if old_total == 0 {
        return 0;
    }
    let new_replicas = new.map_or(0, |s| s.replicas);
    let all_total = old_total + new_replicas;
    let min_available = desired - max_unavailable;
    let new_unavailable = new.map_or(0, |s| (s.replicas - s.available).max(0));
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return 0;
    }
    oldest_first(old);
    // Unhealthy replicas first: removing them costs no availability.
    let mut cleaned = 0;
    for set in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if set.replicas == 0 || set.replicas <= set.available {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(set.replicas - set.available);
        set.replicas -= down;
        cleaned += down;
    }
    // Then available ones, as long as enough stay available.
    let available = total_available(old) + new.map_or(0, |s| s.available);
    if available <= min_available {
        return cleaned;
    }
    let budget = available - min_available;
    let mut scaled = 0;
    for set in old.iter_mut() {
        if scaled >= budget {
            break;
        }
        if set.replicas == 0 {
            continue;
        }
        let down = set.replicas.min(budget - scaled);
        set.replicas -= down;
        scaled += down;
    }
    cleaned + scaled
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn s(text: &str) -> IntOrString {
        IntOrString::String(text.into())
    }

    fn set(name: &str, replicas: i32, available: i32, created: i64) -> Set {
        Set {
            name: name.into(),
            replicas,
            actual: replicas,
            ready: available,
            available,
            created: Some(Timestamp::from_second(created).unwrap()),
            revision: 0,
            desired_annotation: None,
            max_annotation: None,
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let i = IntOrString::Int;
        let cases = [
            (s("25%"), s("25%"), 10, Ok((3, 2))),
            (s("25%"), s("25%"), 1, Ok((1, 0))),
            (s("25%"), s("25%"), 4, Ok((1, 1))),
            (s("0%"), s("25%"), 3, Ok((0, 1))),
            (s("10%"), s("10%"), 0, Ok((0, 1))),
            (i(1), i(0), 3, Ok((1, 0))),
            (i(0), i(1), 3, Ok((0, 1))),
            (i(2), s("50%"), 5, Ok((2, 2))),
            (s("100%"), s("100%"), 3, Ok((3, 3))),
            (s("1%"), s("1%"), 50, Ok((1, 0))),
            (s("1%"), s("1%"), 100, Ok((1, 1))),
            (i(0), i(0), 3, Err(StrategyError::BothZero)),
            (s("0%"), i(0), 3, Err(StrategyError::BothZero)),
            (
                i(-1),
                i(1),
                3,
                Err(StrategyError::Negative { field: "maxSurge" }),
            ),
        ];
        for (surge, unavailable, desired, expected) in cases {
            assert_eq!(
                fenceposts(&surge, &unavailable, desired),
                expected,
                "{surge:?} {unavailable:?} of {desired}"
            );
        }
        assert!(matches!(
            fenceposts(&s("x"), &s("1%"), 3),
            Err(StrategyError::NotAPercentage { .. })
        ));
    }

    #[test]
    fn the_new_set_grows_within_the_surge() {
        let old = set("old", 3, 3, 1);
        let new = set("new", 0, 0, 2);
        // maxSurge 1 over 3 desired: 4 pods at most.
        assert_eq!(new_set_replicas(3, 1, &[old.clone(), new.clone()], &new), 1);
        // Already at the ceiling.
        let grown = set("new", 1, 0, 2);
        assert_eq!(
            new_set_replicas(3, 1, &[old.clone(), grown.clone()], &grown),
            1
        );
        // Never past desired, even with a large surge.
        assert_eq!(
            new_set_replicas(3, 10, &[set("old", 0, 0, 1), new.clone()], &new),
            3
        );
        // Surge 0 (Recreate-like ordering with maxUnavailable): wait for old to shrink.
        assert_eq!(new_set_replicas(3, 0, &[old, new.clone()], &new), 0);
    }

    #[test]
    fn old_sets_shrink_only_as_availability_allows() {
        // maxUnavailable 0, maxSurge 1: new has 1 not yet available pod -> no scale down.
        let new = set("new", 1, 0, 2);
        let mut old = vec![set("old", 3, 3, 1)];
        assert_eq!(scale_down_old(3, 0, Some(&new), &mut old), 0);
        assert_eq!(old[0].replicas, 3);
        // The new pod became available: one old pod may go.
        let new = set("new", 1, 1, 2);
        assert_eq!(scale_down_old(3, 0, Some(&new), &mut old), 1);
        assert_eq!(old[0].replicas, 2);
        // maxUnavailable 1, no surge: one old pod goes at once.
        let new = set("new", 0, 0, 2);
        let mut old = vec![set("old", 3, 3, 1)];
        assert_eq!(scale_down_old(3, 1, Some(&new), &mut old), 1);
        assert_eq!(old[0].replicas, 2);
    }

    #[test]
    fn unhealthy_old_pods_go_first_and_oldest_sets_first() {
        // Two old sets, the older one entirely unavailable.
        let new = set("new", 2, 2, 3);
        let mut old = vec![set("mid", 2, 2, 2), set("oldest", 2, 0, 1)];
        // desired 4, maxUnavailable 1: min available 3; available = 2 + 2 = 4.
        let removed = scale_down_old(4, 1, Some(&new), &mut old);
        let by_name = |n: &str| old.iter().find(|s| s.name == n).unwrap().replicas;
        assert_eq!(by_name("oldest"), 0, "unavailable pods are removed first");
        assert_eq!(by_name("mid"), 1);
        assert_eq!(removed, 3);
    }

    #[test]
    fn a_full_rollout_keeps_availability_at_every_step() {
        for (surge, unavailable) in [(1, 0), (0, 1), (2, 1), (1, 1), (3, 0), (0, 3)] {
            let desired = 3;
            let mut new = set("new", 0, 0, 2);
            let mut old = vec![set("old", 3, 3, 1)];
            for _ in 0..20 {
                let all: Vec<Set> = old.iter().cloned().chain([new.clone()]).collect();
                new.replicas = new_set_replicas(desired, surge, &all, &new);
                assert!(total_replicas(&old) + new.replicas <= desired + surge);
                // Pods come up and become available (the kubelet's part).
                new.available = new.replicas;
                scale_down_old(desired, unavailable, Some(&new), &mut old);
                old.iter_mut()
                    .for_each(|s| s.available = s.available.min(s.replicas));
                assert!(total_available(&old) + new.available >= desired - unavailable);
            }
            assert_eq!(
                (new.replicas, total_replicas(&old)),
                (3, 0),
                "{surge}/{unavailable}"
            );
        }
    }
}
