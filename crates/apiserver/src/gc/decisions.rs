//! What the garbage collector and the namespace controller decide, as pure functions of what
//! they know (an object, its owners' and dependents' states, its finalizers); the async code
//! around them only reads the graph and carries the actions out.
//!
//! The rules are upstream's `pkg/controller/garbagecollector` (`attemptToDeleteItem`,
//! `processDeletingDependentsItem`, `orphanDependents`) and `pkg/controller/namespace`.

/// The finalizer a deletion with `propagationPolicy: Orphan` leaves on the owner.
pub const ORPHAN: &str = "orphan";
/// The finalizer a deletion with `propagationPolicy: Foreground` leaves on the owner.
pub const FOREGROUND: &str = "foregroundDeletion";

/// How a delete the collector makes propagates to the deleted object's own dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "Background",
            Self::Foreground => "Foreground",
        }
    }
}

/// One write the collector makes; objects are named by uid, every delete carries it as a
/// precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Delete {
        uid: String,
        propagation: Propagation,
    },
    /// Drop the references to these owners from the object's `ownerReferences`.
    RemoveOwnerReferences { uid: String, owners: Vec<String> },
    RemoveFinalizer {
        uid: String,
        finalizer: &'static str,
    },
    /// The namespace is empty: remove it (its uid, when known, as a precondition).
    RemoveNamespace { name: String, uid: Option<String> },
}

/// An owner reference as the collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub uid: String,
    /// `blockOwnerDeletion: true`: the owner's foreground deletion waits for this dependent.
    pub blocks: bool,
}

/// A dependent of an owner that is being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependent<'a> {
    pub uid: &'a str,
    pub deleting: bool,
    /// Whether its reference to this owner blocks the owner's deletion.
    pub blocks: bool,
}

/// An object that is not being deleted: deleted when every owner is gone, its references to
/// the gone ones dropped when some remain, left alone when all exist (or it has none).
pub fn for_dependent(
    uid: &str,
    owners: &[OwnerRef],
    owner_exists: impl Fn(&str) -> bool,
) -> Option<Action> {
    let gone: Vec<String> = owners
        .iter()
        .filter(|owner| !owner_exists(&owner.uid))
        .map(|owner| owner.uid.clone())
        .collect();
    if gone.is_empty() {
        None
    } else if gone.len() == owners.len() {
        Some(Action::Delete {
            uid: uid.to_string(),
            propagation: Propagation::Background,
        })
    } else {
        Some(Action::RemoveOwnerReferences {
            uid: uid.to_string(),
            owners: gone,
        })
    }
}

/// An owner being deleted, by its finalizers: `orphan` drops its references from every
/// dependent and then the finalizer; `foregroundDeletion` deletes every dependent not yet being
/// deleted (in the foreground too) and drops the finalizer once no dependent blocks it. Any
/// other finalizer is someone else's to remove: nothing to do.
pub fn for_deleting_owner(
    uid: &str,
    finalizers: &[String],
    dependents: &[Dependent<'_>],
) -> Vec<Action> {
    let has = |finalizer: &str| finalizers.iter().any(|f| f == finalizer);
    if has(ORPHAN) {
        let mut actions: Vec<Action> = dependents
            .iter()
            .map(|dependent| Action::RemoveOwnerReferences {
                uid: dependent.uid.to_string(),
                owners: vec![uid.to_string()],
            })
            .collect();
        actions.push(Action::RemoveFinalizer {
            uid: uid.to_string(),
            finalizer: ORPHAN,
        });
        return actions;
    }
    if !has(FOREGROUND) {
        return Vec::new();
    }
    let mut actions: Vec<Action> = dependents
        .iter()
        .filter(|dependent| !dependent.deleting)
        .map(|dependent| Action::Delete {
            uid: dependent.uid.to_string(),
            propagation: Propagation::Foreground,
        })
        .collect();
    if !dependents.iter().any(|dependent| dependent.blocks) {
        actions.push(Action::RemoveFinalizer {
            uid: uid.to_string(),
            finalizer: FOREGROUND,
        });
    }
    actions
}

/// A namespace being deleted, by its members (uid, being deleted): each member not yet being
/// deleted is deleted; once none is left the namespace goes.
pub fn for_terminating_namespace(
    name: &str,
    uid: Option<&str>,
    members: &[(&str, bool)],
) -> Vec<Action> {
    if members.is_empty() {
        return vec![Action::RemoveNamespace {
            name: name.to_string(),
            uid: uid.map(str::to_string),
        }];
    }
    members
        .iter()
        .filter(|(_, deleting)| !deleting)
        .map(|(uid, _)| Action::Delete {
            uid: uid.to_string(),
            propagation: Propagation::Background,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, blocks: bool) -> OwnerRef {
        OwnerRef {
            uid: uid.to_string(),
            blocks,
        }
    }

    fn delete(uid: &str, propagation: Propagation) -> Action {
        Action::Delete {
            uid: uid.to_string(),
            propagation,
        }
    }

    fn remove_finalizer(uid: &str, finalizer: &'static str) -> Action {
        Action::RemoveFinalizer {
            uid: uid.to_string(),
            finalizer,
        }
    }

    fn dependent(uid: &str, deleting: bool, blocks: bool) -> Dependent<'_> {
        Dependent {
            uid,
            deleting,
            blocks,
        }
    }

    #[test]
    fn an_object_without_owners_is_left_alone() {
        assert_eq!(for_dependent("pod", &[], |_| false), None);
    }

    #[test]
    fn an_object_whose_owners_all_exist_is_left_alone() {
        let owners = [owner("set", true), owner("other", false)];
        assert_eq!(for_dependent("pod", &owners, |_| true), None);
    }

    #[test]
    fn an_object_whose_only_owner_is_gone_is_deleted_in_the_background() {
        let owners = [owner("set", true)];
        assert_eq!(
            for_dependent("pod", &owners, |_| false),
            Some(delete("pod", Propagation::Background))
        );
    }

    #[test]
    fn an_object_with_two_owners_survives_one_and_forgets_it() {
        let owners = [owner("gone", false), owner("alive", false)];
        assert_eq!(
            for_dependent("pod", &owners, |uid| uid == "alive"),
            Some(Action::RemoveOwnerReferences {
                uid: "pod".into(),
                owners: vec!["gone".into()],
            })
        );
    }

    #[test]
    fn an_object_whose_owners_are_all_gone_is_deleted_however_many_it_had() {
        let owners = [owner("a", false), owner("b", true)];
        assert_eq!(
            for_dependent("pod", &owners, |_| false),
            Some(delete("pod", Propagation::Background))
        );
    }

    #[test]
    fn an_orphaning_owner_drops_itself_from_every_dependent_then_its_finalizer() {
        let finalizers = [ORPHAN.to_string()];
        let dependents = [dependent("a", false, true), dependent("b", true, false)];
        assert_eq!(
            for_deleting_owner("set", &finalizers, &dependents),
            vec![
                Action::RemoveOwnerReferences {
                    uid: "a".into(),
                    owners: vec!["set".into()]
                },
                Action::RemoveOwnerReferences {
                    uid: "b".into(),
                    owners: vec!["set".into()]
                },
                remove_finalizer("set", ORPHAN),
            ]
        );
    }

    #[test]
    fn an_orphaning_owner_without_dependents_only_drops_its_finalizer() {
        assert_eq!(
            for_deleting_owner("set", &[ORPHAN.to_string()], &[]),
            vec![remove_finalizer("set", ORPHAN)]
        );
    }

    #[test]
    fn orphaning_wins_when_an_owner_has_both_finalizers() {
        let finalizers = [FOREGROUND.to_string(), ORPHAN.to_string()];
        let actions = for_deleting_owner("set", &finalizers, &[dependent("a", false, true)]);
        assert!(
            !actions
                .iter()
                .any(|action| matches!(action, Action::Delete { .. })),
            "{actions:?}"
        );
    }

    #[test]
    fn a_foreground_owner_deletes_its_dependents_in_the_foreground_and_waits_for_blocking_ones() {
        let finalizers = [FOREGROUND.to_string()];
        let dependents = [dependent("a", false, true), dependent("b", false, false)];
        assert_eq!(
            for_deleting_owner("set", &finalizers, &dependents),
            vec![
                delete("a", Propagation::Foreground),
                delete("b", Propagation::Foreground)
            ]
        );
    }

    #[test]
    fn a_foreground_owner_does_not_delete_a_dependent_twice() {
        let finalizers = [FOREGROUND.to_string()];
        let dependents = [dependent("a", true, true)];
        assert_eq!(for_deleting_owner("set", &finalizers, &dependents), vec![]);
    }

    #[test]
    fn a_foreground_owner_goes_once_no_dependent_blocks_it() {
        let finalizers = [FOREGROUND.to_string()];
        let dependents = [dependent("a", true, false)];
        assert_eq!(
            for_deleting_owner("set", &finalizers, &dependents),
            vec![remove_finalizer("set", FOREGROUND)]
        );
        assert_eq!(
            for_deleting_owner("set", &finalizers, &[]),
            vec![remove_finalizer("set", FOREGROUND)]
        );
    }

    #[test]
    fn an_owner_held_only_by_someone_elses_finalizer_is_left_to_them() {
        let finalizers = ["example.com/keep".to_string()];
        assert_eq!(
            for_deleting_owner("set", &finalizers, &[dependent("a", false, true)]),
            vec![]
        );
    }

    #[test]
    fn a_terminating_namespace_deletes_its_members_not_yet_being_deleted() {
        assert_eq!(
            for_terminating_namespace("ns", Some("u"), &[("a", false), ("b", true)]),
            vec![delete("a", Propagation::Background)]
        );
    }

    #[test]
    fn an_empty_terminating_namespace_is_removed_with_its_uid() {
        assert_eq!(
            for_terminating_namespace("ns", Some("u"), &[]),
            vec![Action::RemoveNamespace {
                name: "ns".into(),
                uid: Some("u".into())
            }]
        );
    }
}
