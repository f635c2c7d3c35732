//! The store contract, checked the same way on every backend. Each case is a function over
//! `&dyn Store`; `battery!` stamps out one test per case and backend.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use petset_store::{Event, EventKind, ListOptions, Revision, Store, StoreError, WatchStream};

use crate::backends;

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn list(prefix: &str) -> ListOptions {
    ListOptions {
        prefix: prefix.into(),
        ..ListOptions::default()
    }
}

fn keys_of(items: &[petset_store::KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_ref()).collect()
}

/// The next `count` events of a watch (progress reports skipped), or a failure after 10 s.
pub async fn next_events(stream: &mut WatchStream, count: usize) -> Vec<Event> {
    let mut events = Vec::new();
    while events.len() < count {
        let batch = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {count} events", events.len()))
            .expect("watch ended early")
            .expect("watch failed");
        events.extend(batch.events);
    }
    events
}

/// The error a watch from `start` fails with: at once, or (as etcd does, after confirming the
/// watch) as its first item. kube-apiserver passes on either form as 410 Gone.
async fn watch_error(store: &dyn Store, prefix: &str, start: Revision) -> StoreError {
    let mut stream = match store.watch(prefix, start).await {
        Err(error) => return error,
        Ok(stream) => stream,
    };
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Err(error))) => error,
        other => panic!("watch from {start} did not fail: {other:?}"),
    }
}

pub async fn create_then_get_returns_the_value_and_its_revisions(store: &dyn Store) {
    let before = store.current_revision().await.expect("revision");
    let kv = store.create("/t/a", bytes("one")).await.expect("create");
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(kv.mod_revision, before + 1);
    assert_eq!(store.get("/t/a").await.expect("get"), Some(kv.clone()));
    assert_eq!(store.get("/t/missing").await.expect("get"), None);
    assert_eq!(
        store.current_revision().await.expect("revision"),
        kv.mod_revision
    );
    let again = store.create("/t/a", bytes("two")).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(
        store.get("/t/a").await.expect("get").map(|kv| kv.value),
        Some(bytes("one"))
    );
}

pub async fn update_needs_the_current_revision_and_conflict_returns_the_current_value(
    store: &dyn Store,
) {
    let created = store.create("/t/a", bytes("v1")).await.expect("create");
    let updated = store
        .update("/t/a", bytes("v2"), created.mod_revision)
        .await
        .expect("update");
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    match store
        .update("/t/a", bytes("stale"), created.mod_revision)
        .await
    {
        Err(StoreError::Conflict {
            current, expected, ..
        }) => {
            assert_eq!(*current, updated);
            assert_eq!(expected, created.mod_revision);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let missing = store.update("/t/missing", bytes("x"), 1).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    assert_eq!(
        store.get("/t/a").await.expect("get").map(|kv| kv.value),
        Some(bytes("v2"))
    );
}

pub async fn delete_is_guarded_and_reports_the_removed_value(store: &dyn Store) {
    let created = store.create("/t/a", bytes("v1")).await.expect("create");
    let wrong = store.delete("/t/a", Some(created.mod_revision + 100)).await;
    assert!(
        matches!(wrong, Err(StoreError::Conflict { .. })),
        "{wrong:?}"
    );
    let deleted = store
        .delete("/t/a", Some(created.mod_revision))
        .await
        .expect("delete");
    assert_eq!(deleted.kind, EventKind::Deleted);
    assert_eq!(deleted.prev, Some(created.clone()));
    assert!(deleted.revision > created.mod_revision);
    assert_eq!(store.get("/t/a").await.expect("get"), None);
    let again = store.delete("/t/a", None).await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    let recreated = store.create("/t/a", bytes("v2")).await.expect("recreate");
    assert!(recreated.create_revision > deleted.revision);
    let unguarded = store.delete("/t/a", None).await.expect("unguarded delete");
    assert_eq!(unguarded.prev.map(|kv| kv.value), Some(bytes("v2")));
}

pub async fn every_write_advances_the_revision_by_one(store: &dyn Store) {
    let start = store.current_revision().await.expect("revision");
    let a = store.create("/t/a", bytes("1")).await.expect("a");
    store.create("/t/b", bytes("1")).await.expect("b");
    store
        .update("/t/a", bytes("2"), a.mod_revision)
        .await
        .expect("update");
    store.delete("/t/b", None).await.expect("delete");
    let failed = store.create("/t/a", bytes("3")).await;
    assert!(failed.is_err(), "a failed write must not take a revision");
    assert_eq!(store.current_revision().await.expect("revision"), start + 4);
}

pub async fn list_returns_a_prefix_in_key_order_in_consistent_pages(store: &dyn Store) {
    for key in ["/t/c", "/t/a", "/t/e", "/t/b", "/t/d", "/tz", "/u/x"] {
        store.create(key, bytes(key)).await.expect("create");
    }
    let all = store.list(list("/t/")).await.expect("list");
    assert_eq!(
        keys_of(&all.items),
        ["/t/a", "/t/b", "/t/c", "/t/d", "/t/e"]
    );
    assert_eq!(all.remaining, 0);

    let first = store
        .list(ListOptions {
            limit: Some(2),
            ..list("/t/")
        })
        .await
        .expect("page 1");
    assert_eq!(keys_of(&first.items), ["/t/a", "/t/b"]);
    assert_eq!(first.remaining, 3);
    // A write between pages must not show in the later pages, which read at the first's revision.
    store
        .create("/t/bb", bytes("late"))
        .await
        .expect("late create");
    let second = store
        .list(ListOptions {
            start: Some("/t/b\0".into()),
            limit: Some(2),
            revision: Some(first.revision),
            ..list("/t/")
        })
        .await
        .expect("page 2");
    assert_eq!(keys_of(&second.items), ["/t/c", "/t/d"]);
    assert_eq!(second.remaining, 1);
    assert_eq!(second.revision, first.revision);
    let third = store
        .list(ListOptions {
            start: Some("/t/d\0".into()),
            limit: Some(2),
            revision: Some(first.revision),
            ..list("/t/")
        })
        .await
        .expect("page 3");
    assert_eq!(keys_of(&third.items), ["/t/e"]);
    assert_eq!(third.remaining, 0);
}

pub async fn list_at_a_past_revision_shows_the_state_then(store: &dyn Store) {
    let a = store.create("/t/a", bytes("a1")).await.expect("a");
    store.create("/t/b", bytes("b1")).await.expect("b");
    let then = store.current_revision().await.expect("revision");
    store
        .update("/t/a", bytes("a2"), a.mod_revision)
        .await
        .expect("update a");
    store.delete("/t/b", None).await.expect("delete b");
    store.create("/t/c", bytes("c1")).await.expect("c");

    let past = store
        .list(ListOptions {
            revision: Some(then),
            ..list("/t/")
        })
        .await
        .expect("past list");
    let values: Vec<_> = past
        .items
        .iter()
        .map(|kv| (&*kv.key, kv.value.clone()))
        .collect();
    assert_eq!(values, [("/t/a", bytes("a1")), ("/t/b", bytes("b1"))]);
    assert_eq!(past.revision, then);

    let future = store
        .list(ListOptions {
            revision: Some(store.current_revision().await.expect("revision") + 10),
            ..list("/t/")
        })
        .await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "{future:?}"
    );
}

pub async fn watch_replays_history_then_follows_live_writes(store: &dyn Store) {
    let a = store.create("/t/a", bytes("1")).await.expect("create");
    store
        .update("/t/a", bytes("2"), a.mod_revision)
        .await
        .expect("update");
    store.delete("/t/a", None).await.expect("delete");
    let mut watch = store.watch("/t/", a.mod_revision).await.expect("watch");
    let replayed = next_events(&mut watch, 3).await;
    let kinds: Vec<_> = replayed.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Created, EventKind::Updated, EventKind::Deleted]
    );
    assert_eq!(
        replayed[1].prev.as_ref().map(|kv| kv.value.clone()),
        Some(bytes("1"))
    );
    assert_eq!(
        replayed[2].prev.as_ref().map(|kv| kv.value.clone()),
        Some(bytes("2"))
    );
    assert_eq!(replayed[2].value, None);
    let revisions: Vec<Revision> = replayed.iter().map(|e| e.revision).collect();
    assert_eq!(
        revisions,
        [a.mod_revision, a.mod_revision + 1, a.mod_revision + 2]
    );

    let live = store
        .create("/t/b", bytes("live"))
        .await
        .expect("live create");
    let followed = next_events(&mut watch, 1).await;
    assert_eq!(followed[0].value, Some(live));
}

pub async fn watch_sees_only_its_prefix_and_from_zero_starts_at_the_next_write(store: &dyn Store) {
    store.create("/t/old", bytes("old")).await.expect("old");
    let mut watch = store.watch("/t/", 0).await.expect("watch");
    store
        .create("/u/other", bytes("x"))
        .await
        .expect("other prefix");
    store.create("/tz", bytes("x")).await.expect("sibling key");
    let mine = store.create("/t/new", bytes("new")).await.expect("mine");
    let events = next_events(&mut watch, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].value, Some(mine));
}

pub async fn compaction_forgets_history_before_the_compacted_revision(store: &dyn Store) {
    let a = store.create("/t/a", bytes("1")).await.expect("create");
    let b = store
        .update("/t/a", bytes("2"), a.mod_revision)
        .await
        .expect("update");
    store
        .update("/t/a", bytes("3"), b.mod_revision)
        .await
        .expect("update");
    store.compact(b.mod_revision).await.expect("compact");

    let old_list = store
        .list(ListOptions {
            revision: Some(a.mod_revision),
            ..list("/t/")
        })
        .await;
    assert!(
        matches!(old_list, Err(StoreError::Compacted { .. })),
        "{old_list:?}"
    );
    let old_watch = watch_error(store, "/t/", a.mod_revision).await;
    assert!(
        matches!(old_watch, StoreError::Compacted { .. }),
        "{old_watch:?}"
    );

    let kept = store
        .list(ListOptions {
            revision: Some(b.mod_revision),
            ..list("/t/")
        })
        .await
        .expect("list at the compacted revision");
    assert_eq!(kept.items[0].value, bytes("2"));
    let mut watch = store
        .watch("/t/", b.mod_revision + 1)
        .await
        .expect("watch after compaction");
    assert_eq!(
        next_events(&mut watch, 1).await[0]
            .value
            .as_ref()
            .map(|kv| kv.value.clone()),
        Some(bytes("3"))
    );

    let again = store.compact(b.mod_revision).await;
    assert!(
        matches!(again, Err(StoreError::Compacted { .. })),
        "{again:?}"
    );
    let future = store.compact(b.mod_revision + 100).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "{future:?}"
    );
    assert_eq!(
        store.get("/t/a").await.expect("get").map(|kv| kv.value),
        Some(bytes("3"))
    );
}

pub async fn concurrent_creates_of_one_key_let_exactly_one_win(store: Arc<dyn Store>) {
    let attempts = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.create("/t/contested", bytes(&i.to_string())).await })
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(StoreError::AlreadyExists { .. }))))
        .count();
    assert_eq!((won, lost), (1, 15));
}

pub async fn concurrent_updates_from_one_revision_let_exactly_one_win(store: Arc<dyn Store>) {
    let base = store
        .create("/t/counter", bytes("0"))
        .await
        .expect("create");
    let attempts = (0..16).map(|i| {
        let store = store.clone();
        let expected = base.mod_revision;
        tokio::spawn(async move {
            store
                .update("/t/counter", bytes(&i.to_string()), expected)
                .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(StoreError::Conflict { .. }))))
        .count();
    assert_eq!((won, conflicts), (1, 15));
}

pub async fn every_watcher_sees_every_write_once_in_revision_order(store: Arc<dyn Store>) {
    let start = store.current_revision().await.expect("revision") + 1;
    let mut watchers = Vec::new();
    for _ in 0..5 {
        watchers.push(store.watch("/t/", start).await.expect("watch"));
    }
    let writers = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..25 {
                store
                    .create(&format!("/t/{w}/{i}"), bytes("x"))
                    .await
                    .expect("create");
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.expect("writer task");
    }
    let mut seen = Vec::new();
    for watcher in &mut watchers {
        let revisions: Vec<Revision> = next_events(watcher, 100)
            .await
            .iter()
            .map(|e| e.revision)
            .collect();
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "out of order: {revisions:?}"
        );
        seen.push(revisions);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "watchers disagree");
}

macro_rules! battery {
    ($backend:ident: $($case:ident($arg:ident)),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(backend) = super::backends::$backend().await else { return };
                    battery!(@call $case, $arg, backend);
                }
            )*
        }
    };
    (@call $case:ident, store, $backend:ident) => { super::$case(&*$backend.store).await };
    (@call $case:ident, shared, $backend:ident) => { super::$case($backend.store.clone()).await };
}

macro_rules! every_backend {
    ($($backend:ident),*) => {
        $(
            battery!($backend:
                create_then_get_returns_the_value_and_its_revisions(store),
                update_needs_the_current_revision_and_conflict_returns_the_current_value(store),
                delete_is_guarded_and_reports_the_removed_value(store),
                every_write_advances_the_revision_by_one(store),
                list_returns_a_prefix_in_key_order_in_consistent_pages(store),
                list_at_a_past_revision_shows_the_state_then(store),
                watch_replays_history_then_follows_live_writes(store),
                watch_sees_only_its_prefix_and_from_zero_starts_at_the_next_write(store),
                compaction_forgets_history_before_the_compacted_revision(store),
                concurrent_creates_of_one_key_let_exactly_one_win(shared),
                concurrent_updates_from_one_revision_let_exactly_one_win(shared),
                every_watcher_sees_every_write_once_in_revision_order(shared),
            );
        )*
    };
}

every_backend!(memory, embedded, etcd);
