//! `petset bench api`: the API server in process (its router, registry, garbage collector and
//! store, without TLS and sockets): create throughput, get and list latency over many pods, and
//! watch event delivery to many concurrent watchers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures::StreamExt;
use petset_apiserver::ApiState;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::stats::{Summary, ms};
use crate::cli::ApiBenchArgs;

const NAMESPACE: &str = "bench";

pub async fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let store = petset_store::open(&args.store, temp.path())
        .await
        .context("opening the store")?;
    let state = ApiState::new(store, None);
    state.registry().bootstrap().await.context("bootstrap")?;
    let watch_cache = state.spawn_watch_cache();
    let controllers = petset_apiserver::spawn_controllers(&state);
    let app = petset_apiserver::router(state.clone());
    request(
        &app,
        Method::POST,
        "/api/v1/namespaces",
        Some(json!({"metadata": {"name": NAMESPACE}})),
    )
    .await?;
    println!(
        "petset bench api: store {}, {} pods, {} concurrent clients, {} watchers",
        args.store, args.pods, args.concurrency, args.watchers
    );

    let (elapsed, creates) = measure_creates(&app, args.pods, args.concurrency).await?;
    println!(
        "create   {:>7} pods in {:.2}s: {:>8.0} creates/s   p50 {} ms  p99 {} ms  max {} ms",
        args.pods,
        elapsed.as_secs_f64(),
        args.pods as f64 / elapsed.as_secs_f64(),
        ms(creates.p50),
        ms(creates.p99),
        ms(creates.max)
    );
    let gets = measure_gets(&app, args.pods, args.gets).await?;
    println!(
        "get      {:>7} requests:            p50 {} ms  p99 {} ms  max {} ms",
        gets.count,
        ms(gets.p50),
        ms(gets.p99),
        ms(gets.max)
    );
    for (label, accept) in [
        ("list", "application/json"),
        (
            "list-tbl",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        ),
    ] {
        let lists = measure_lists(&app, args.lists, accept, args.pods).await?;
        println!(
            "{label:<8} {:>7} lists of {} pods:  p50 {} ms  p99 {} ms  max {} ms",
            lists.count,
            args.pods,
            ms(lists.p50),
            ms(lists.p99),
            ms(lists.max)
        );
    }
    let [admin, rbac, token] =
        super::api_auth::measure(&state, &app, NAMESPACE, args.pods, args.gets).await?;
    for (label, summary) in super::api_auth::CALLERS.iter().zip([admin, rbac, token]) {
        println!(
            "get-{label:<9} {:>5} requests:         p50 {} µs  p99 {} µs  max {} µs",
            summary.count,
            super::api_auth::us(summary.p50),
            super::api_auth::us(summary.p99),
            super::api_auth::us(summary.max)
        );
    }
    println!(
        "authorization (RBAC) adds {} µs p50 to a get; a service-account token {} µs p50",
        super::api_auth::us(rbac.p50.saturating_sub(admin.p50)),
        super::api_auth::us(token.p50.saturating_sub(admin.p50))
    );
    let delivery = measure_watch(&app, args.watchers, args.watch_events).await?;
    println!(
        "watch    {:>7} events x {} watchers:  p50 {} ms  p99 {} ms  max {} ms",
        args.watch_events,
        args.watchers,
        ms(delivery.p50),
        ms(delivery.p99),
        ms(delivery.max)
    );
    state.begin_shutdown();
    controllers.abort();
    watch_cache.abort();
    Ok(())
}

async fn request(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    request_with(app, method, uri, body, "application/json").await
}

async fn request_with(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
    accept: &str,
) -> anyhow::Result<Value> {
    let content_type = if method == Method::PATCH {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(match body {
            Some(body) => Body::from(serde_json::to_vec(&body)?),
            None => Body::empty(),
        })?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    if !(status == StatusCode::OK || status == StatusCode::CREATED) {
        bail!("{uri}: {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

fn pod(index: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("pod-{index}"), "labels": {"app": "bench", "shard": (index % 10).to_string()}},
        "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/nginx-slim:0.8",
            "ports": [{"containerPort": 80, "name": "web"}]}]}
    })
}

/// Runs `total` operations on `concurrency` tasks; returns the wall time and latencies.
async fn concurrently<F, Fut>(
    total: usize,
    concurrency: usize,
    operation: F,
) -> anyhow::Result<(Duration, Summary)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let operation = Arc::new(operation);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let next = next.clone();
        let operation = operation.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let began = Instant::now();
                operation(index).await?;
                latencies.push(began.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((started.elapsed(), Summary::of(all)))
}

async fn measure_creates(
    app: &Router,
    pods: usize,
    concurrency: usize,
) -> anyhow::Result<(Duration, Summary)> {
    let app = app.clone();
    concurrently(pods, concurrency, move |index| {
        let app = app.clone();
        async move {
            request(
                &app,
                Method::POST,
                &format!("/api/v1/namespaces/{NAMESPACE}/pods"),
                Some(pod(index)),
            )
            .await
            .map(drop)
        }
    })
    .await
}

async fn measure_gets(app: &Router, pods: usize, gets: usize) -> anyhow::Result<Summary> {
    let app = app.clone();
    let (_, summary) = concurrently(gets, 1, move |index| {
        let app = app.clone();
        // A spread of names without a random number generator: a multiplicative hash.
        let name = format!("pod-{}", index.wrapping_mul(2_654_435_761) % pods.max(1));
        async move {
            request(
                &app,
                Method::GET,
                &format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}"),
                None,
            )
            .await
            .map(drop)
        }
    })
    .await?;
    Ok(summary)
}

async fn measure_lists(
    app: &Router,
    lists: usize,
    accept: &'static str,
    expected: usize,
) -> anyhow::Result<Summary> {
    let app = app.clone();
    let (_, summary) = concurrently(lists, 1, move |_| {
        let app = app.clone();
        async move {
            let count = list_count(&app, accept).await?;
            if count != expected {
                bail!("a list returned {count} pods, expected {expected}");
            }
            Ok(())
        }
    })
    .await?;
    Ok(summary)
}

/// Lists every pod and counts them without parsing the answer: the server's cost is measured,
/// not the client's.
async fn list_count(app: &Router, accept: &str) -> anyhow::Result<usize> {
    let request = Request::builder()
        .uri(format!("/api/v1/namespaces/{NAMESPACE}/pods"))
        .header("accept", accept)
        .body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    if response.status() != StatusCode::OK {
        bail!("list: {}", response.status());
    }
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    const UID: &[u8] = b"\"uid\":\"";
    Ok(bytes.windows(UID.len()).filter(|w| *w == UID).count())
}

/// Each watcher reads pod events; each write stamps the time it was sent into the object, so
/// a watcher measures from just before the write to the event's arrival.
async fn measure_watch(app: &Router, watchers: usize, events: usize) -> anyhow::Result<Summary> {
    let origin = Instant::now();
    let current = request(
        app,
        Method::GET,
        &format!("/api/v1/namespaces/{NAMESPACE}/pods?limit=1"),
        None,
    )
    .await?;
    let revision = current
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string();
    let mut readers = Vec::new();
    for _ in 0..watchers {
        let request = Request::builder()
            .uri(format!(
                "/api/v1/namespaces/{NAMESPACE}/pods?watch=true&resourceVersion={revision}&fieldSelector=metadata.name%3Dpod-0"
            ))
            .body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        let mut body = response.into_body().into_data_stream();
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(events);
            let mut pending = Vec::new();
            while latencies.len() < events {
                let Some(chunk) = body.next().await else {
                    break;
                };
                let arrived = origin.elapsed();
                pending.extend_from_slice(&chunk?);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    // Find the stamp without parsing the event: the server's cost is measured,
                    // not the client's.
                    if let Some(sent) = sent_stamp(&line) {
                        latencies.push(arrived.saturating_sub(Duration::from_micros(sent)));
                    }
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    for index in 0..events {
        let sent = origin.elapsed().as_micros().to_string();
        request(
            app,
            Method::PATCH,
            &format!("/api/v1/namespaces/{NAMESPACE}/pods/pod-0"),
            Some(json!({"metadata": {"annotations": {"bench/sent-us": sent, "bench/index": index.to_string()}}})),
        )
        .await?;
    }
    let mut all = Vec::new();
    for reader in readers {
        let latencies = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .context("watchers did not receive every event within 60 s")???;
        all.extend(latencies);
    }
    if all.len() < watchers * events {
        bail!(
            "watchers received {} of {} events",
            all.len(),
            watchers * events
        );
    }
    Ok(Summary::of(all))
}

/// The `bench/sent-us` annotation of a watch event line.
fn sent_stamp(line: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"bench/sent-us\":\"";
    let start = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = line[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&line[start..start + digits])
        .ok()?
        .parse()
        .ok()
}
