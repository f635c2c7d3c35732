//! Crash safety of the embedded backend: a child process writes in a loop and prints each write
//! the store acknowledged; the parent SIGKILLs it mid-stream, reopens the file, and checks that
//! every acknowledged write is there and that nothing torn is visible.
//!
//! The child is this same test binary, re-run with `--exact` on [`crash_writer_child`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use petset_store::{ListOptions, LocalStore, Store, StoreError};

const CHILD_STORE: &str = "PETSET_CRASH_CHILD_STORE";
const CHILD_ROUND: &str = "PETSET_CRASH_CHILD_ROUND";
const WRITERS: usize = 16;

/// The value a key must hold: derived from the key, ~1 KiB, so a torn value cannot pass.
fn value_for(key: &str, generation: u64) -> Bytes {
    let unit = format!("{key}#{generation};");
    Bytes::from(unit.repeat(1024 / unit.len() + 1))
}

fn parse_value(key: &str, value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let unit = text.split_inclusive(';').next()?;
    let generation = unit
        .strip_prefix(key)?
        .strip_prefix('#')?
        .strip_suffix(';')?
        .parse()
        .ok()?;
    (Bytes::copy_from_slice(value) == value_for(key, generation)).then_some(generation)
}

/// The child half of [`acknowledged_writes_survive_sigkill`]: does nothing unless that test
/// started this process. It creates keys and bumps per-writer counters until killed, printing
/// `ack KEY GENERATION REVISION` after each acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_writer_child() {
    let Ok(path) = std::env::var(CHILD_STORE) else {
        return;
    };
    let round = std::env::var(CHILD_ROUND).unwrap_or_default();
    let store = Arc::new(LocalStore::open(Path::new(&path)).expect("child opens the store"));
    let tasks = (0..WRITERS).map(|writer| {
        let store = store.clone();
        let round = round.clone();
        tokio::spawn(async move {
            let counter = format!("/crash/counter/{writer}");
            let mut counter_revision = match store.get(&counter).await.expect("get counter") {
                Some(kv) => kv.mod_revision,
                None => {
                    store
                        .create(&counter, value_for(&counter, 0))
                        .await
                        .expect("create counter")
                        .mod_revision
                }
            };
            let mut generation = parse_value(
                &counter,
                &store
                    .get(&counter)
                    .await
                    .expect("get")
                    .expect("counter")
                    .value,
            )
            .expect("counter value is intact");
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("/crash/keys/{round}/{writer}/{i}");
                let kv = store
                    .create(&key, value_for(&key, 0))
                    .await
                    .expect("create");
                println!("ack {key} 0 {}", kv.mod_revision);
                generation += 1;
                let kv = store
                    .update(&counter, value_for(&counter, generation), counter_revision)
                    .await
                    .expect("update counter");
                counter_revision = kv.mod_revision;
                println!("ack {counter} {generation} {}", kv.mod_revision);
                let _ = std::io::stdout().flush();
                i += 1;
            }
        })
    });
    futures::future::join_all(tasks).await;
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for (round, acks_before_kill) in [(0, 300), (1, 1500), (2, 700)] {
        let acked = run_child_until_killed(&path, round, acks_before_kill);
        runtime.block_on(check_store(&path, &acked, round));
    }
}

/// The highest acknowledged (generation, revision) of each key in one child run.
fn run_child_until_killed(
    path: &Path,
    round: usize,
    acks_before_kill: usize,
) -> BTreeMap<String, (u64, i64)> {
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "crash::crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STORE, path)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked = BTreeMap::new();
    let mut lines = BufReader::new(stdout).lines();
    let mut count = 0;
    let mut killed = false;
    while let Some(Ok(line)) = lines.next() {
        // A line cut by the kill has no trailing revision that parses; it is not an ack.
        let mut fields = line.split(' ');
        if let (Some("ack"), Some(key), Some(generation), Some(revision), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) && let (Ok(generation), Ok(revision)) =
            (generation.parse::<u64>(), revision.parse::<i64>())
        {
            let entry = acked
                .entry(key.to_string())
                .or_insert((generation, revision));
            *entry = (*entry).max((generation, revision));
            count += 1;
        }
        if count >= acks_before_kill && !killed {
            child.kill().expect("SIGKILL the child");
            killed = true;
        }
    }
    let status = child.wait().expect("reap the child");
    assert!(
        killed,
        "the child exited by itself ({status}) after {count} acks"
    );
    acked
}

async fn check_store(path: &Path, acked: &BTreeMap<String, (u64, i64)>, round: usize) {
    let store =
        LocalStore::open(path).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
    for (key, (generation, revision)) in acked {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("round {round}: acknowledged {key} is missing"));
        let found =
            parse_value(key, &kv.value).unwrap_or_else(|| panic!("round {round}: {key} is torn"));
        assert!(
            (found, kv.mod_revision) >= (*generation, *revision),
            "round {round}: {key} went back from generation {generation} to {found}"
        );
    }
    let all = store
        .list(ListOptions {
            prefix: "/crash/".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    for kv in &all.items {
        assert!(
            parse_value(&kv.key, &kv.value).is_some(),
            "round {round}: {} is torn",
            kv.key
        );
        assert!(kv.mod_revision <= all.revision);
    }
    let after = format!("/crash/after/{round}");
    let write = store.create(&after, value_for(&after, 0)).await;
    assert!(
        !matches!(write, Err(StoreError::Backend(_))),
        "the reopened store takes writes: {write:?}"
    );
    store.close().await;
}
