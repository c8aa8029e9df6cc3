//! Scaling a deployment without rolling it (Kubernetes' `scale`): one active set takes
//! the new count; during a rollout the change is spread over the active sets in
//! proportion to their size, so a rollout in progress keeps its shape.

use super::view::{Set, total_replicas};

/// Resizes `sets` (the new set, if any, among them) for `desired` replicas.
/// `new` is the index of the new set; `surge` the resolved maxSurge (0 for Recreate);
/// `rolling` whether the strategy is RollingUpdate; `status_replicas` the deployment's
/// `status.replicas`, used for sets without a `max-replicas` annotation.
pub fn scale(
    sets: &mut [Set],
    new: Option<usize>,
    desired: i32,
    surge: i32,
    rolling: bool,
    status_replicas: i32,
) {
    if let Some(i) = active_or_latest(sets, new) {
        sets[i].replicas = desired;
        return;
    }
    if let Some(n) = new {
        let s = &sets[n];
        if s.desired_annotation == Some(desired) && s.available == desired && s.replicas == desired
        {
            // Saturated: the new set is done, the old ones go.
            for (i, set) in sets.iter_mut().enumerate() {
                if i != n {
                    set.replicas = 0;
                }
            }
            return;
        }
    }
    if !rolling {
        return;
    }
    let mut active: Vec<usize> = (0..sets.len()).filter(|&i| sets[i].is_active()).collect();
    let allowed = if desired > 0 { desired + surge } else { 0 };
    let to_add =
        allowed - total_replicas(&active.iter().map(|&i| sets[i].clone()).collect::<Vec<_>>());
    if to_add == 0 {
        return;
    }
    // Growing: larger (then newer) sets first; shrinking: larger (then older) first.
    active.sort_by(|&a, &b| {
        let (x, y) = (&sets[a], &sets[b]);
        y.replicas.cmp(&x.replicas).then_with(|| {
            if to_add > 0 {
                y.created.cmp(&x.created)
            } else {
                x.created.cmp(&y.created)
            }
        })
    });
    let mut added = 0;
    let mut sizes = Vec::with_capacity(active.len());
    for &i in &active {
        let proportion = proportion(&sets[i], desired, surge, status_replicas, to_add, added);
        sizes.push(sets[i].replicas + proportion);
        added += proportion;
    }
    if let Some(first) = sizes.first_mut() {
        *first = (*first + to_add - added).max(0);
    }
    for (&i, size) in active.iter().zip(sizes) {
        sets[i].replicas = size;
    }
}

/// The only active set, or the newest when none is active; `None` with several active.
fn active_or_latest(sets: &[Set], new: Option<usize>) -> Option<usize> {
    let active: Vec<usize> = (0..sets.len()).filter(|&i| sets[i].is_active()).collect();
    match active.len() {
        1 => Some(active[0]),
        0 => new.or_else(|| (0..sets.len()).max_by(|&a, &b| sets[a].created.cmp(&sets[b].created))),
        _ => None,
    }
}

/// How many replicas `set` gets of `to_add`, `added` being handed out already.
fn proportion(
    set: &Set,
    desired: i32,
    surge: i32,
    status_replicas: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    if set.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(set, desired, surge, status_replicas);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The set's share of the new size, minus its current size.
fn fraction(set: &Set, desired: i32, surge: i32, status_replicas: i32) -> i32 {
    if desired == 0 {
        return -set.replicas;
    }
    let total = f64::from(desired + surge);
    let annotated = set.max_annotation.unwrap_or(status_replicas);
    if annotated <= 0 {
        return 0;
    }
    let size = f64::from(set.replicas) * total / f64::from(annotated);
    // Sizes are small; the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let rounded = size.round() as i32;
    rounded - set.replicas
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn set(name: &str, replicas: i32, max: Option<i32>, created: i64) -> Set {
        Set {
            name: name.into(),
            replicas,
            actual: replicas,
            ready: replicas,
            available: replicas,
            created: Some(Timestamp::from_second(created).unwrap()),
            revision: 1,
            desired_annotation: max.map(|m| m - 1),
            max_annotation: max,
        }
    }

    #[test]
    fn a_single_active_set_takes_the_new_count() {
        let mut sets = vec![set("old", 0, Some(4), 1), set("new", 3, Some(4), 2)];
        scale(&mut sets, Some(1), 5, 1, true, 3);
        assert_eq!((sets[0].replicas, sets[1].replicas), (0, 5));
    }

    #[test]
    fn a_rollout_in_progress_scales_proportionally() {
        // 10 desired, surge 3 (max 13): old 8 + new 5 = 13. Scale to 20: max 20+5=25.
        let mut sets = vec![set("old", 8, Some(13), 1), set("new", 5, Some(13), 2)];
        scale(&mut sets, Some(1), 20, 5, true, 13);
        assert_eq!(total_replicas(&sets), 25);
        assert_eq!((sets[0].replicas, sets[1].replicas), (15, 10));
        // And back down to 5 (max 5+2=7).
        scale(&mut sets, Some(1), 5, 2, true, 25);
        assert_eq!(total_replicas(&sets), 7);
        assert!(sets.iter().all(|s| s.replicas > 0));
    }

    #[test]
    fn scaling_to_zero_empties_every_set() {
        let mut sets = vec![set("old", 2, Some(4), 1), set("new", 2, Some(4), 2)];
        scale(&mut sets, Some(1), 0, 1, true, 4);
        assert_eq!(total_replicas(&sets), 0);
    }

    #[test]
    fn a_saturated_new_set_retires_the_old_ones() {
        let mut sets = vec![set("old", 1, Some(4), 1), set("new", 3, Some(4), 2)];
        scale(&mut sets, Some(1), 3, 1, true, 4);
        assert_eq!((sets[0].replicas, sets[1].replicas), (0, 3));
    }
}
