//! The embedded backend's promises beyond the battery: what is written survives a reopen,
//! the file is locked while open, and a damaged file is reported, never reset.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use petset_store::{ListOptions, LocalStore, Store, StoreError};

use crate::battery::next_events;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_values_revision_history_and_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = LocalStore::open(&path).expect("open");
    let a = store
        .create("/t/a", Bytes::from_static(b"1"))
        .await
        .expect("create");
    let a2 = store
        .update("/t/a", Bytes::from_static(b"2"), a.mod_revision)
        .await
        .expect("update");
    store
        .create("/t/b", Bytes::from_static(b"b"))
        .await
        .expect("create b");
    store.delete("/t/b", None).await.expect("delete b");
    store.compact(a2.mod_revision).await.expect("compact");
    let revision = store.current_revision().await.expect("revision");
    store.close().await;

    let reopened = LocalStore::open(&path).expect("reopen");
    assert_eq!(
        reopened.current_revision().await.expect("revision"),
        revision
    );
    assert_eq!(reopened.get("/t/a").await.expect("get"), Some(a2.clone()));
    assert_eq!(reopened.get("/t/b").await.expect("get"), None);
    // History from the compaction point on is still there for watchers that resume.
    let mut watch = reopened.watch("/t/", a2.mod_revision).await.expect("watch");
    let events = next_events(&mut watch, 3).await;
    assert_eq!(
        events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [revision - 2, revision - 1, revision]
    );
    let compacted = reopened
        .list(ListOptions {
            prefix: "/t/".into(),
            revision: Some(a.mod_revision),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(compacted, Err(StoreError::Compacted { .. })),
        "{compacted:?}"
    );
    // Writes go on from where the file left off.
    let next = reopened
        .create("/t/c", Bytes::new())
        .await
        .expect("create after reopen");
    assert_eq!(next.mod_revision, revision + 1);
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused_with_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let _first = LocalStore::open(&path).expect("first open");
    let Err(error) = LocalStore::open(&path) else {
        panic!("a second open must fail while the first is open");
    };
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("already open"), "{message}");
}

#[tokio::test]
async fn a_damaged_file_is_reported_with_its_path_and_left_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).expect("write garbage");
    let Err(error) = LocalStore::open(&path) else {
        panic!("a damaged file must not open");
    };
    assert!(matches!(error, StoreError::Open { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read back"),
        garbage,
        "the file must not be reset"
    );
}

#[tokio::test]
async fn a_watcher_with_no_matching_writes_gets_progress_reports() {
    let store = LocalStore::in_memory();
    let mut watch = store.watch("/quiet/", 0).await.expect("watch");
    let other = store.create("/busy/a", Bytes::new()).await.expect("create");
    let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a progress report within the interval")
        .expect("stream open")
        .expect("no error");
    assert!(batch.events.is_empty());
    assert_eq!(batch.revision, other.mod_revision);
}

#[tokio::test]
async fn watches_end_when_the_store_closes() {
    let store = LocalStore::in_memory();
    let mut watch = store.watch("/t/", 0).await.expect("watch");
    store.close().await;
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("ends");
    assert!(matches!(end, Some(Err(StoreError::Closed))), "{end:?}");
}

/// `petset up` closes the store through the trait after the cluster stopped: the writes it
/// acknowledged, even ones racing with the close, are in the file, later writes are refused,
/// and the file's lock is released while the store value still exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_kept_every_acknowledged_write_and_takes_no_more() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(LocalStore::open(&path).expect("open"));
    store
        .create("/t/first", Bytes::from_static(b"1"))
        .await
        .expect("create before close");
    let racing: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = format!("/t/racing-{i}");
                let write = store.create(&key, Bytes::from_static(b"r")).await;
                match write {
                    Ok(_) => Some(key),
                    Err(StoreError::Closed) => None,
                    Err(other) => panic!("a write racing with close fails only as closed: {other}"),
                }
            })
        })
        .collect();
    store.close().await;
    let mut acknowledged = vec!["/t/first".to_string()];
    for writer in racing {
        acknowledged.extend(writer.await.expect("writer"));
    }
    let late = store.create("/t/late", Bytes::new()).await;
    assert!(matches!(late, Err(StoreError::Closed)), "{late:?}");
    store.close().await;

    let reopened = LocalStore::open(&path).expect("close released the file");
    for key in &acknowledged {
        assert!(
            reopened.get(key).await.expect("get").is_some(),
            "{key} was acknowledged before the close"
        );
    }
    assert_eq!(reopened.get("/t/late").await.expect("get"), None);
}
