//! The multi-version state of the local backends: current values plus a window of history.
//!
//! Writes are first *staged* against the state (checked, given revisions, turned into events)
//! and *applied* only once they are durable, so readers never see a write that could still be
//! lost. Everything here is synchronous and pure; `local.rs` adds the writer thread and watch.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, StoreError};

/// The revision of an empty store, as in etcd: the first write gets revision 2.
pub(crate) const INITIAL_REVISION: Revision = 1;

/// Current values and the history window `[max(compacted, 2), revision]`, one event per revision.
#[derive(Debug)]
pub(crate) struct Mvcc {
    current: BTreeMap<Arc<str>, KeyValue>,
    history: VecDeque<Event>,
    revision: Revision,
    compacted: Revision,
}

impl Default for Mvcc {
    fn default() -> Self {
        Self {
            current: BTreeMap::new(),
            history: VecDeque::new(),
            revision: INITIAL_REVISION,
            compacted: 0,
        }
    }
}

impl Mvcc {
    /// Rebuilds the state from what a durable backend loaded, checking that it is coherent.
    pub(crate) fn restore(
        current: BTreeMap<Arc<str>, KeyValue>,
        history: VecDeque<Event>,
        revision: Revision,
        compacted: Revision,
    ) -> Result<Self, String> {
        let first_expected = compacted.max(INITIAL_REVISION + 1);
        let expected_len = (revision - first_expected + 1).max(0);
        if history.len() as i64 != expected_len {
            return Err(format!(
                "history holds {} events, expected {expected_len} (revisions {first_expected} to {revision})",
                history.len()
            ));
        }
        for (offset, event) in history.iter().enumerate() {
            if event.revision != first_expected + offset as i64 {
                return Err(format!(
                    "history is not contiguous: found revision {} at position {offset}",
                    event.revision
                ));
            }
        }
        if let Some(kv) = current.values().find(|kv| kv.mod_revision > revision) {
            return Err(format!(
                "key {:?} has revision {} beyond the store revision {revision}",
                kv.key, kv.mod_revision
            ));
        }
        Ok(Self {
            current,
            history,
            revision,
            compacted,
        })
    }

    pub(crate) fn revision(&self) -> Revision {
        self.revision
    }

    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        self.current.get(key).cloned()
    }

    fn first_history_revision(&self) -> Revision {
        self.revision - self.history.len() as i64 + 1
    }

    fn check_readable(&self, revision: Revision) -> Result<()> {
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision < self.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: Some(self.compacted),
            });
        }
        Ok(())
    }

    /// Lists keys under a prefix now or at a past revision: the current values with every
    /// later write undone.
    pub(crate) fn list(&self, options: &ListOptions) -> Result<ListResult> {
        let at = options.revision.filter(|r| *r > 0).unwrap_or(self.revision);
        self.check_readable(at)?;
        let prefix = options.prefix.as_str();
        let start = match options.start.as_deref() {
            Some(start) if start > prefix => start,
            _ => prefix,
        };
        let in_range = |key: &str| key >= start && key.starts_with(prefix);

        // Newest first, so the value left for a key is the one before its oldest later write.
        let mut undo: BTreeMap<&Arc<str>, Option<&KeyValue>> = BTreeMap::new();
        for event in self.history.iter().rev() {
            if event.revision <= at {
                break;
            }
            if in_range(&event.key) {
                undo.insert(&event.key, event.prev.as_ref());
            }
        }

        let mut now = self
            .current
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .peekable();
        let mut undone = undo.into_iter().peekable();
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut result = ListResult {
            revision: at,
            ..ListResult::default()
        };
        loop {
            let order = match (now.peek(), undone.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((a, _)), Some((b, _))) => a.as_ref().cmp(b.as_ref()),
            };
            let value = match order {
                Ordering::Less => now.next().map(|(_, kv)| kv),
                Ordering::Greater => undone.next().and_then(|(_, kv)| kv),
                Ordering::Equal => {
                    now.next();
                    undone.next().and_then(|(_, kv)| kv)
                }
            };
            if let Some(kv) = value {
                if result.items.len() < limit {
                    result.items.push(kv.clone());
                } else {
                    result.remaining += 1;
                }
            }
        }
        Ok(result)
    }

    /// Events under `prefix` from revision `from` on, at most `max` of them, and the revision
    /// up to which history has been examined (all matching events up to it are returned).
    pub(crate) fn events_from(
        &self,
        prefix: &str,
        from: Revision,
        max: usize,
    ) -> Result<(Vec<Event>, Revision)> {
        if from < self.compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted: Some(self.compacted),
            });
        }
        let first = self.first_history_revision();
        let from = from.max(first);
        let mut examined = from - 1;
        let mut events = Vec::new();
        for event in self.history.iter().skip((from - first) as usize) {
            if events.len() >= max {
                break;
            }
            examined = event.revision;
            if event.key.starts_with(prefix) {
                events.push(event.clone());
            }
        }
        Ok((events, examined))
    }

    /// Starts a batch of writes checked against this state.
    pub(crate) fn stage(&self) -> Staged<'_> {
        Staged {
            base: self,
            changes: HashMap::new(),
            events: Vec::new(),
            revision: self.revision,
            compact_to: None,
        }
    }

    /// Makes a staged batch visible (after it is durable).
    pub(crate) fn apply(&mut self, events: Vec<Event>, compact_to: Option<Revision>) {
        for event in events {
            debug_assert_eq!(event.revision, self.revision + 1);
            self.revision = event.revision;
            match &event.value {
                Some(kv) => {
                    self.current.insert(kv.key.clone(), kv.clone());
                }
                None => {
                    self.current.remove(&event.key);
                }
            }
            self.history.push_back(event);
        }
        if let Some(revision) = compact_to {
            self.compacted = revision;
            while self
                .history
                .front()
                .is_some_and(|event| event.revision < revision)
            {
                self.history.pop_front();
            }
        }
    }
}

/// A batch of writes checked against a [`Mvcc`] and against each other, not yet applied.
pub(crate) struct Staged<'a> {
    base: &'a Mvcc,
    changes: HashMap<Arc<str>, Option<KeyValue>>,
    pub(crate) events: Vec<Event>,
    revision: Revision,
    pub(crate) compact_to: Option<Revision>,
}

impl Staged<'_> {
    fn lookup(&self, key: &str) -> Option<&KeyValue> {
        match self.changes.get(key) {
            Some(staged) => staged.as_ref(),
            None => self.base.current.get(key),
        }
    }

    fn record(&mut self, event: Event) {
        self.changes.insert(event.key.clone(), event.value.clone());
        self.events.push(event);
    }

    fn expect(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let current = self
            .lookup(key)
            .ok_or_else(|| StoreError::NotFound { key: key.into() })?;
        match expected {
            Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
                key: key.into(),
                expected,
                current: Box::new(current.clone()),
            }),
            _ => Ok(current.clone()),
        }
    }

    pub(crate) fn create(&mut self, key: &str, value: Bytes) -> Result<KeyValue> {
        if self.lookup(key).is_some() {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        self.revision += 1;
        let kv = KeyValue {
            key: Arc::from(key),
            value,
            create_revision: self.revision,
            mod_revision: self.revision,
        };
        self.record(Event {
            revision: self.revision,
            kind: EventKind::Created,
            key: kv.key.clone(),
            value: Some(kv.clone()),
            prev: None,
        });
        Ok(kv)
    }

    pub(crate) fn update(
        &mut self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue> {
        let prev = self.expect(key, Some(expected))?;
        self.revision += 1;
        let kv = KeyValue {
            key: prev.key.clone(),
            value,
            create_revision: prev.create_revision,
            mod_revision: self.revision,
        };
        self.record(Event {
            revision: self.revision,
            kind: EventKind::Updated,
            key: kv.key.clone(),
            value: Some(kv.clone()),
            prev: Some(prev),
        });
        Ok(kv)
    }

    pub(crate) fn delete(&mut self, key: &str, expected: Option<Revision>) -> Result<Event> {
        let prev = self.expect(key, expected)?;
        self.revision += 1;
        let event = Event {
            revision: self.revision,
            kind: EventKind::Deleted,
            key: prev.key.clone(),
            value: None,
            prev: Some(prev),
        };
        self.record(event.clone());
        Ok(event)
    }

    pub(crate) fn compact(&mut self, revision: Revision) -> Result<()> {
        let compacted = self.compact_to.unwrap_or(self.base.compacted);
        if revision <= compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: Some(compacted),
            });
        }
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        self.compact_to = Some(revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(state: &mut Mvcc, write: impl FnOnce(&mut Staged<'_>)) {
        let mut staged = state.stage();
        write(&mut staged);
        let (events, compact_to) = (staged.events, staged.compact_to);
        state.apply(events, compact_to);
    }

    fn keys(result: &ListResult) -> Vec<(&str, &[u8])> {
        result
            .items
            .iter()
            .map(|kv| (kv.key.as_ref(), kv.value.as_ref()))
            .collect()
    }

    #[test]
    fn staged_writes_see_each_other_but_stay_invisible_until_applied() {
        let mut state = Mvcc::default();
        let mut staged = state.stage();
        let created = staged
            .create("a", Bytes::from_static(b"1"))
            .expect("create");
        assert!(matches!(
            staged.create("a", Bytes::new()),
            Err(StoreError::AlreadyExists { .. })
        ));
        staged
            .update("a", Bytes::from_static(b"2"), created.mod_revision)
            .expect("update in the same batch");
        assert_eq!(state.get("a"), None);
        let events = staged.events;
        state.apply(events, None);
        assert_eq!(
            state.get("a").map(|kv| kv.value),
            Some(Bytes::from_static(b"2"))
        );
        assert_eq!(state.revision(), 3);
    }

    #[test]
    fn list_at_a_past_revision_undoes_later_writes() {
        let mut state = Mvcc::default();
        commit(&mut state, |s| {
            s.create("/p/a", Bytes::from_static(b"a1")).expect("a");
            s.create("/p/b", Bytes::from_static(b"b1")).expect("b");
        });
        let before = state.revision();
        commit(&mut state, |s| {
            s.update("/p/a", Bytes::from_static(b"a2"), 2).expect("a2");
            s.delete("/p/b", None).expect("delete b");
            s.create("/p/c", Bytes::from_static(b"c1")).expect("c");
            s.create("/q/x", Bytes::from_static(b"x")).expect("x");
        });
        let options = |revision| ListOptions {
            prefix: "/p/".into(),
            revision: Some(revision),
            ..ListOptions::default()
        };
        let then = state.list(&options(before)).expect("past list");
        assert_eq!(
            keys(&then),
            vec![("/p/a", &b"a1"[..]), ("/p/b", &b"b1"[..])]
        );
        let now = state.list(&options(0)).expect("list");
        assert_eq!(keys(&now), vec![("/p/a", &b"a2"[..]), ("/p/c", &b"c1"[..])]);
    }

    #[test]
    fn restore_rejects_a_history_with_a_gap() {
        let mut state = Mvcc::default();
        commit(&mut state, |s| {
            for key in ["a", "b", "c"] {
                s.create(key, Bytes::new()).expect("create");
            }
        });
        let mut history = state.history.clone();
        history.remove(1);
        let error = Mvcc::restore(state.current.clone(), history, state.revision, 0)
            .expect_err("gap must be detected");
        assert!(error.contains("holds 2 events"), "{error}");
    }
}
