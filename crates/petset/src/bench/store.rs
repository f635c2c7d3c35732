//! `petset bench store`: durable writes/s and latency at several writer counts, then the
//! latency from a write call to its event reaching each of many watchers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use petset_store::{Store, StoreSpec};

use super::stats::{Summary, ms};
use crate::cli::StoreBenchArgs;

/// Writes per second the watch run is paced at, so that it measures delivery, not a backlog.
const WATCH_WRITE_RATE: f64 = 500.0;

pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let store = petset_store::open(&args.store, &dir)
        .await
        .context("opening the store")?;
    let backend = match &args.store {
        StoreSpec::Embedded => "embedded (redb, fsync)".to_string(),
        other => other.to_string(),
    };
    // Unique keys per run, so runs against one etcd do not collide.
    let prefix = format!("/bench/{}-{}/", std::process::id(), unix_millis());
    let seconds = Duration::from_secs_f64(args.seconds.max(0.1));

    println!("| backend | writers | writes/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for &writers in &args.writers {
        let run_prefix = format!("{prefix}w{writers}/");
        let (summary, elapsed) = measure_writes(
            &store,
            writers.max(1),
            seconds,
            args.value_bytes,
            &run_prefix,
        )
        .await?;
        println!(
            "| {backend} | {writers} | {:.0} | {} | {} | {} |",
            summary.count as f64 / elapsed.as_secs_f64(),
            ms(summary.p50),
            ms(summary.p99),
            ms(summary.max)
        );
    }

    println!();
    println!("| backend | watchers | events | write rate/s | delivery p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let summary = measure_watch(
        &store,
        args.watchers.max(1),
        args.watch_events.max(1),
        args.value_bytes,
        &format!("{prefix}watch/"),
    )
    .await?;
    println!(
        "| {backend} | {} | {} | {WATCH_WRITE_RATE:.0} | {} | {} | {} |",
        args.watchers,
        args.watch_events,
        ms(summary.p50),
        ms(summary.p99),
        ms(summary.max)
    );
    Ok(())
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// `writers` tasks create keys as fast as the store acknowledges them, for `duration`.
async fn measure_writes(
    store: &Arc<dyn Store>,
    writers: usize,
    duration: Duration,
    value_bytes: usize,
    prefix: &str,
) -> anyhow::Result<(Summary, Duration)> {
    let value = Bytes::from(vec![b'x'; value_bytes]);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            let value = value.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let key = format!("{prefix}{writer}/{i}");
                    let begun = Instant::now();
                    store.create(&key, value.clone()).await?;
                    latencies.push(begun.elapsed());
                    i += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in futures::future::join_all(tasks).await {
        all.extend(task.context("writer task")??);
    }
    Ok((Summary::of(all), started.elapsed()))
}

/// `watchers` watches on one prefix; one writer creates `events` keys at a fixed rate, each value
/// carrying the time of its write call; every watcher records how long each event took to arrive.
async fn measure_watch(
    store: &Arc<dyn Store>,
    watchers: usize,
    events: usize,
    value_bytes: usize,
    prefix: &str,
) -> anyhow::Result<Summary> {
    let epoch = Instant::now();
    let start = store.current_revision().await? + 1;
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut stream = store.watch(prefix, start).await?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(events);
            while latencies.len() < events {
                let batch = match tokio::time::timeout(Duration::from_secs(30), stream.next()).await
                {
                    Ok(Some(batch)) => batch?,
                    Ok(None) => anyhow::bail!("watch ended early"),
                    Err(_) => anyhow::bail!("no event for 30 s"),
                };
                let arrived = epoch.elapsed();
                for event in batch.events {
                    let sent = event
                        .value
                        .as_ref()
                        .and_then(|kv| kv.value.get(..8))
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .context("event without a timestamp")?;
                    latencies.push(arrived.saturating_sub(Duration::from_nanos(sent)));
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / WATCH_WRITE_RATE);
    let mut ticker = tokio::time::interval(interval);
    for i in 0..events {
        ticker.tick().await;
        let mut value = BytesMut::with_capacity(value_bytes.max(8));
        value.extend_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
        value.resize(value_bytes.max(8), b'x');
        store
            .create(&format!("{prefix}{i}"), value.freeze())
            .await?;
    }
    let mut all = Vec::new();
    for task in futures::future::join_all(tasks).await {
        all.extend(task.context("watcher task")??);
    }
    Ok(Summary::of(all))
}
