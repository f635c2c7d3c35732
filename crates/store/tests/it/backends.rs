//! The three backends the battery runs against, each in a fresh instance per test.

use std::any::Any;
use std::sync::Arc;

use petset_store::{EtcdStore, LocalStore, Store};

/// A store plus whatever must live as long as it (a temp dir, an etcd process).
pub struct Backend {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send>,
}

pub async fn memory() -> Option<Backend> {
    Some(Backend {
        store: Arc::new(LocalStore::in_memory()),
        _keep: Box::new(()),
    })
}

pub async fn embedded() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalStore::open(&dir.path().join("store.redb")).expect("open embedded store");
    Some(Backend {
        store: Arc::new(store),
        _keep: Box::new(dir),
    })
}

/// A store on a fresh etcd; `None` (a printed skip, or a failure under CI) without etcd.
pub async fn etcd() -> Option<Backend> {
    let started = tokio::task::spawn_blocking(petset_testkit::Etcd::start)
        .await
        .expect("etcd start task");
    let etcd = match started {
        Ok(etcd) => etcd,
        Err(reason) => {
            petset_testkit::skip("etcd store battery", &reason);
            return None;
        }
    };
    let store = EtcdStore::connect(&[etcd.endpoint()])
        .await
        .expect("connect to etcd");
    Some(Backend {
        store: Arc::new(store),
        _keep: Box::new(etcd),
    })
}
