//! What the StatefulSet watch last said about each set, so a sync in flight can tell, between
//! batches of writes, that the set it works from was changed (a new spec, a deletion
//! underway) or deleted, and stop: the watch event that said so has queued the set again.
//! A lookup is a lock and a map probe, cheap enough to make before every batch.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;

use crate::cache::version_of;

/// The last event's view of one set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    uid: String,
    generation: i64,
    deleting: bool,
    version: u64,
    /// Deleted: kept until a sync finds the set gone (`forget`), so a sync in flight sees it.
    gone: bool,
}

impl Seen {
    fn of(set: &StatefulSet, gone: bool) -> Self {
        Self {
            uid: set.uid().unwrap_or_default(),
            generation: set.metadata.generation.unwrap_or(0),
            deleting: set.metadata.deletion_timestamp.is_some(),
            version: version_of(set),
            gone,
        }
    }
}

/// Keyed by (namespace, name).
#[derive(Default)]
pub struct Newest {
    seen: HashMap<(String, String), Seen>,
}

fn key_of(set: &StatefulSet) -> (String, String) {
    (set.namespace().unwrap_or_default(), set.name_any())
}

impl Newest {
    pub fn applied(&mut self, set: &StatefulSet) {
        self.seen.insert(key_of(set), Seen::of(set, false));
    }

    pub fn deleted(&mut self, set: &StatefulSet) {
        self.seen.insert(key_of(set), Seen::of(set, true));
    }

    /// A sync found the set gone: nothing is in flight for it any more.
    pub fn forget(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if self.seen.get(&key).is_some_and(|seen| seen.gone) {
            self.seen.remove(&key);
        }
    }

    /// Whether the watch has shown a change to `set` that makes its spec out of date: it was
    /// deleted, replaced by another set of the same name, given a newer generation or marked
    /// for deletion. A sync may hold a newer copy than the watch (it reads the set from the
    /// API), so only a strictly newer resourceVersion counts, and changes that leave the spec
    /// alone (status, labels) do not.
    pub fn supersedes(&self, set: &StatefulSet) -> bool {
        let Some(seen) = self.seen.get(&key_of(set)) else {
            return false;
        };
        let ours = Seen::of(set, false);
        if seen.gone {
            return seen.uid == ours.uid;
        }
        seen.version > ours.version
            && (seen.uid != ours.uid
                || seen.generation > ours.generation
                || (seen.deleting && !ours.deleting))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(uid: &str, generation: i64, version: u64) -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default",
            "uid": uid, "generation": generation, "resourceVersion": version.to_string()}}))
        .expect("a set")
    }

    #[test]
    fn a_newer_generation_or_a_deletion_supersedes_a_set() {
        let mut newest = Newest::default();
        let ours = set("a", 1, 10);
        assert!(!newest.supersedes(&ours), "never seen: nothing to say");
        newest.applied(&ours);
        assert!(!newest.supersedes(&ours));
        newest.applied(&set("a", 1, 11));
        assert!(!newest.supersedes(&ours), "a status change keeps the spec");
        newest.applied(&set("a", 2, 12));
        assert!(newest.supersedes(&ours));
        assert!(!newest.supersedes(&set("a", 2, 12)));
        let mut deleting = set("a", 2, 13);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(1_000_000).expect("a time"),
            ));
        newest.applied(&deleting);
        assert!(newest.supersedes(&set("a", 2, 12)));
        newest.deleted(&set("a", 2, 14));
        assert!(newest.supersedes(&set("a", 2, 20)), "deleted is final");
        assert!(
            !newest.supersedes(&set("b", 1, 20)),
            "another set of the name"
        );
        newest.forget("default", "web");
        assert!(!newest.supersedes(&ours));
    }

    #[test]
    fn a_sync_holding_a_newer_copy_than_the_watch_is_not_superseded() {
        let mut newest = Newest::default();
        newest.applied(&set("a", 1, 10));
        assert!(!newest.supersedes(&set("a", 2, 12)));
        newest.applied(&set("b", 1, 10));
        assert!(newest.supersedes(&set("a", 3, 9)));
    }
}
