//! The arithmetic of a Deployment's rollout, apart from the API: upstream's
//! `deployment/util` (`ResolveFenceposts`, `NewRSNewReplicas`, `ComputeHash`,
//! `getReplicaSetFraction`) and the counts of `reconcileOldReplicaSets`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// Upstream's `rand.SafeEncodeString` alphabet.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A count or a percentage of `total`; percentages round up or down as asked (upstream's
/// `GetScaledValueFromIntOrPercent`). Anything unparsable counts as 0.
pub fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(number)) => *number,
        Some(IntOrString::String(text)) => {
            let Some(percent) = text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let product = percent.saturating_mul(i64::from(total));
            let count = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(count).unwrap_or(i32::MAX)
        }
    }
}

/// `(maxSurge, maxUnavailable)` for `desired` replicas: surge rounds up, unavailable down, and
/// both 0 would stall the rollout, so unavailable becomes 1 (upstream's `ResolveFenceposts`).
pub fn fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let surge = scaled(max_surge, desired, true);
    let unavailable = scaled(max_unavailable, desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The replicas the new replica set may have in a rolling update: up to `desired + surge`
/// pods in all, never more than `desired` in the new set (upstream's `NewRSNewReplicas`).
pub fn new_replicas_rolling(desired: i32, surge: i32, all_replicas: i32, new_replicas: i32) -> i32 {
    let max_total = desired.saturating_add(surge);
    if all_replicas >= max_total {
        return new_replicas;
    }
    let up = max_total - all_replicas;
    new_replicas + up.min(desired - new_replicas).max(0)
}

/// How many old pods may go now: all pods minus the minimum available minus the new set's
/// pods that are not available yet (upstream's `maxScaledDown`).
pub fn max_scaled_down(
    all_replicas: i32,
    desired: i32,
    unavailable: i32,
    new_replicas: i32,
    new_available: i32,
) -> i32 {
    let min_available = desired - unavailable;
    let new_unavailable = new_replicas - new_available;
    all_replicas - min_available - new_unavailable
}

/// The pod-template-hash of a template: FNV-1a (32 bit) over the template's canonical JSON
/// (keys sorted) and, when given, the collision count as 8 little-endian bytes, spelled in the
/// safe alphabet as upstream's `ComputeHash` spells its sum.
pub fn template_hash(template: &Value, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        feed(&bytes);
    }
    hash.to_string()
        .bytes()
        .map(|digit| SAFE_ALPHABET[usize::from(digit) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The change proportional scaling makes to one replica set of `replicas` (annotated with
/// `max_replicas`, the deployment's size plus surge when the set was last sized), when the
/// deployment's size plus surge is now `target`, given `to_add` in all and `added` so far
/// (upstream's `getReplicaSetProportion`).
pub fn proportion(replicas: i32, max_replicas: i32, target: i32, to_add: i32, added: i32) -> i32 {
    if replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if target == 0 {
        -replicas
    } else if max_replicas <= 0 {
        0
    } else {
        let size = (f64::from(replicas) * f64::from(target) / f64::from(max_replicas)).round();
        size as i32 - replicas
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percent(text: &str) -> IntOrString {
        IntOrString::String(text.into())
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        let quarter = percent("25%");
        assert_eq!(fenceposts(Some(&quarter), Some(&quarter), 10), (3, 2));
        assert_eq!(fenceposts(Some(&quarter), Some(&quarter), 3), (1, 0));
        assert_eq!(fenceposts(Some(&quarter), Some(&quarter), 1), (1, 0));
        assert_eq!(fenceposts(Some(&quarter), Some(&quarter), 1000), (250, 250));
        // Both zero: one may be unavailable, or nothing could ever move.
        assert_eq!(
            fenceposts(Some(&IntOrString::Int(0)), Some(&percent("10%")), 5),
            (0, 1)
        );
        assert_eq!(
            fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(1)), 5),
            (2, 1)
        );
        assert_eq!(scaled(Some(&percent("x%")), 10, true), 0);
    }

    #[test]
    fn the_new_set_grows_up_to_desired_plus_surge() {
        // 3 wanted, surge 1: the first step makes one new pod beside the three old.
        assert_eq!(new_replicas_rolling(3, 1, 3, 0), 1);
        assert_eq!(new_replicas_rolling(3, 1, 4, 1), 1);
        assert_eq!(new_replicas_rolling(3, 1, 3, 1), 2);
        assert_eq!(new_replicas_rolling(3, 1, 0, 0), 3);
        assert_eq!(new_replicas_rolling(10, 3, 10, 0), 3);
    }

    #[test]
    fn old_pods_go_only_while_enough_stay_available() {
        // 3 wanted, 0 unavailable allowed: with 4 pods and the new one not yet available,
        // nothing may go; once it is, one may.
        assert_eq!(max_scaled_down(4, 3, 0, 1, 0), 0);
        assert_eq!(max_scaled_down(4, 3, 0, 1, 1), 1);
        assert_eq!(max_scaled_down(10, 10, 2, 0, 0), 2);
    }

    #[test]
    fn hashes_are_stable_safe_and_change_with_the_collision_count() {
        let template = serde_json::json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}});
        let hash = template_hash(&template, None);
        assert_eq!(hash, template_hash(&template.clone(), None));
        assert!(hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert!(!hash.is_empty() && hash.len() <= 10);
        assert_ne!(hash, template_hash(&template, Some(1)));
        let mut other = template.clone();
        other["spec"]["containers"][0]["image"] = "nginx:2".into();
        assert_ne!(hash, template_hash(&other, None));
    }

    #[test]
    fn proportional_scaling_shares_the_change_by_size() {
        // 10 (+3 surge) became 20 (+5): sets of 8 and 5 annotated with 13 grow to 12 and 8.
        assert_eq!(proportion(8, 13, 25, 12, 0), 7);
        assert_eq!(proportion(5, 13, 25, 12, 7), 5);
        assert_eq!(proportion(5, 13, 25, 12, 12), 0);
        // Scaling to zero takes everything.
        assert_eq!(proportion(4, 13, 0, -13, 0), -4);
    }
}
