//! The deprecated `spec.rollbackTo` of `apps/v1beta1` Deployments (which petset accepts as an
//! old version of `apps/v1`), kept by `apps/v1` as the annotation
//! `deprecated.deployment.rollback.to`: upstream's `rollback.go`. The decision is pure; the
//! controller writes it.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;
use serde_json::Value;

use super::{revision_of, template_without_hash};

/// Where `apps/v1` keeps an old version's `spec.rollbackTo.revision`.
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// The revision a deployment asks to be rolled back to (0: the one before the newest). An
/// annotation that is not a number asks for nothing, as upstream's `getRollbackTo` reads it.
pub fn requested(deployment: &Deployment) -> Option<i64> {
    deployment
        .annotations()
        .get(ROLLBACK_TO)
        .filter(|revision| !revision.is_empty())
        .and_then(|revision| revision.parse().ok())
}

/// What a rollback comes to.
#[derive(Debug, PartialEq)]
pub enum Step<'a> {
    /// Copy this set's template into the deployment (the revision it has).
    Restore(&'a ReplicaSet, i64),
    /// The set of that revision has the deployment's template already.
    Unchanged,
    /// No set has the revision: the event's message.
    NotFound(&'static str),
}

/// Upstream's `LastRevision`: the second-highest revision of the sets (0 when there is none).
fn last_revision(sets: &[ReplicaSet]) -> i64 {
    let (mut newest, mut before) = (0, 0);
    for revision in sets.iter().map(revision_of) {
        if revision >= newest {
            before = newest;
            newest = revision;
        } else if revision > before {
            before = revision;
        }
    }
    before
}

/// The step for rolling back to `revision` (0: the last one) from `template`, the
/// deployment's own.
pub fn decide<'a>(revision: i64, template: &Value, sets: &'a [ReplicaSet]) -> Step<'a> {
    let revision = match revision {
        0 => match last_revision(sets) {
            0 => return Step::NotFound("Unable to find last revision."),
            last => last,
        },
        revision => revision,
    };
    match sets.iter().find(|rs| revision_of(rs) == revision) {
        None => Step::NotFound("Unable to find the revision to rollback to."),
        Some(rs)
            if template_without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref()))
                == *template =>
        {
            Step::Unchanged
        }
        Some(rs) => Step::Restore(rs, revision),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::deployment::{HASH_LABEL, REVISION};

    fn set(revision: i64, image: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{revision}"),
                         "annotations": {REVISION: revision.to_string()}},
            "spec": {"selector": {}, "template": {
                "metadata": {"labels": {"app": "web", HASH_LABEL: format!("h{revision}")}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}}))
        .expect("as the test set it up")
    }

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "web", "image": image}]}})
    }

    #[test]
    fn revision_zero_is_the_one_before_the_newest() {
        let sets = [set(1, "nginx:1"), set(3, "nginx:3"), set(2, "nginx:2")];
        assert_eq!(
            decide(0, &template("nginx:3"), &sets),
            Step::Restore(&sets[2], 2)
        );
        assert_eq!(
            decide(1, &template("nginx:3"), &sets),
            Step::Restore(&sets[0], 1)
        );
    }

    #[test]
    fn a_rollback_that_cannot_be_done_says_why() {
        let only = [set(1, "nginx:1")];
        assert_eq!(
            decide(0, &template("nginx:1"), &only),
            Step::NotFound("Unable to find last revision.")
        );
        assert_eq!(
            decide(7, &template("nginx:1"), &only),
            Step::NotFound("Unable to find the revision to rollback to.")
        );
        // The hash label aside, the set's template is the deployment's.
        assert_eq!(decide(1, &template("nginx:1"), &only), Step::Unchanged);
    }

    #[test]
    fn only_a_number_asks_for_a_rollback() {
        let with = |value: &str| -> Deployment {
            serde_json::from_value(json!({"metadata": {"annotations": {ROLLBACK_TO: value}}}))
                .expect("as the test set it up")
        };
        assert_eq!(requested(&with("2")), Some(2));
        assert_eq!(requested(&with("0")), Some(0));
        assert_eq!(requested(&with("two")), None);
        assert_eq!(requested(&Deployment::default()), None);
    }
}
