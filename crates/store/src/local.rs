//! The local backends, in memory and embedded (redb): one writer thread with group commit, and
//! watches that read the shared history.
//!
//! Writers queue requests to the writer thread. It takes everything queued (up to
//! [`MAX_BATCH`]), stages it against the committed state, makes the whole batch durable with one
//! redb transaction (one fsync for all of them), applies it to the in-memory state, advances the
//! head revision that watchers wait on, and only then answers. So an acknowledged write is
//! durable and visible to every later read, and a failed commit leaves nothing half-written.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::mvcc::Mvcc;
use crate::persist::RedbFile;
use crate::{
    Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchBatch,
    WatchStream,
};

/// The most writes one commit takes; bounds the latency a batch adds to its first writer.
const MAX_BATCH: usize = 4096;
/// The most events one watch batch carries, so a watcher far behind does not hold the lock long.
const MAX_WATCH_BATCH: usize = 1024;
/// How soon a watcher whose prefix saw no writes learns that the revision moved on.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// A store kept in this process: [`LocalStore::in_memory`] or durable [`LocalStore::open`].
pub struct LocalStore {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
}

struct Shared {
    state: RwLock<Mvcc>,
    /// The revision of the last applied batch; the writer thread owns the sender.
    head: watch::Receiver<Revision>,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Mvcc> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Op {
    Create(String, Bytes),
    Update(String, Bytes, Revision),
    Delete(String, Option<Revision>),
    Compact(Revision),
    /// Finish what was queued before, close the file, and take no more writes.
    Close,
}

enum Done {
    Written(KeyValue),
    Deleted(Event),
    Compacted,
    Closed,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

impl LocalStore {
    /// A store that lives only as long as this value: for tests and the simulated benchmarks.
    pub fn in_memory() -> Self {
        Self::start(Mvcc::default(), None)
    }

    /// Opens (or creates) the durable store in the file at `path`. The file is locked while the
    /// store is open; a damaged file is reported, never reset.
    pub fn open(path: &Path) -> Result<Self> {
        let (file, state) = RedbFile::open(path)?;
        Ok(Self::start(state, Some(file)))
    }

    fn start(state: Mvcc, file: Option<RedbFile>) -> Self {
        let (head_tx, head_rx) = watch::channel(state.revision());
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            head: head_rx,
        });
        let (requests, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            shared: shared.clone(),
            queue,
            file,
            head: head_tx,
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .expect("the operating system refused to start the store writer thread");
        Self { shared, requests }
    }

    async fn submit(&self, op: Op) -> Result<Done> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { op, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

struct Writer {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedReceiver<Request>,
    file: Option<RedbFile>,
    head: watch::Sender<Revision>,
}

impl Writer {
    /// Commits batches until the store is dropped or closed. Returning drops the queue (what
    /// was sent after a close is answered [`StoreError::Closed`]) and the head sender (watches
    /// end).
    fn run(mut self) {
        let mut batch = Vec::new();
        while let Some(first) = self.queue.blocking_recv() {
            let mut close = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                if matches!(request.op, Op::Close) {
                    close = Some(request);
                    break;
                }
                batch.push(request);
                if batch.len() < MAX_BATCH {
                    next = self.queue.try_recv().ok();
                }
            }
            let outcomes = self.commit(&batch);
            for (request, outcome) in batch.drain(..).zip(outcomes) {
                let _ = request.reply.send(outcome);
            }
            if let Some(close) = close {
                // The file closes (and its lock goes) before the closer hears back.
                self.file = None;
                let _ = close.reply.send(Ok(Done::Closed));
                return;
            }
        }
    }

    fn commit(&mut self, batch: &[Request]) -> Vec<Result<Done>> {
        let (mut outcomes, events, compact_to) = {
            let state = self.shared.read();
            let mut staged = state.stage();
            let outcomes: Vec<Result<Done>> = batch
                .iter()
                .map(|request| match &request.op {
                    Op::Create(key, value) => staged.create(key, value.clone()).map(Done::Written),
                    Op::Update(key, value, expected) => staged
                        .update(key, value.clone(), *expected)
                        .map(Done::Written),
                    Op::Delete(key, expected) => staged.delete(key, *expected).map(Done::Deleted),
                    Op::Compact(revision) => staged.compact(*revision).map(|()| Done::Compacted),
                    // Never batched: the writer stops at a close.
                    Op::Close => Err(StoreError::Closed),
                })
                .collect();
            (
                outcomes,
                std::mem::take(&mut staged.events),
                staged.compact_to,
            )
        };
        if events.is_empty() && compact_to.is_none() {
            return outcomes;
        }
        if let Some(file) = &mut self.file
            && let Err(error) = file.commit(&events, compact_to)
        {
            tracing::error!(%error, writes = events.len(), "store commit failed");
            for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err(error.clone());
            }
            return outcomes;
        }
        let mut state = self
            .shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        state.apply(events, compact_to);
        self.head.send_replace(state.revision());
        outcomes
    }
}

#[async_trait]
impl Store for LocalStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.read().revision())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.read().get(key))
    }

    async fn list(&self, options: ListOptions) -> Result<ListResult> {
        self.shared.read().list(&options)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        match self.submit(Op::Create(key.into(), value)).await? {
            Done::Written(kv) => Ok(kv),
            _ => Err(StoreError::backend(
                "writer answered a create with another outcome",
            )),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        match self.submit(Op::Update(key.into(), value, expected)).await? {
            Done::Written(kv) => Ok(kv),
            _ => Err(StoreError::backend(
                "writer answered an update with another outcome",
            )),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Event> {
        match self.submit(Op::Delete(key.into(), expected)).await? {
            Done::Deleted(event) => Ok(event),
            _ => Err(StoreError::backend(
                "writer answered a delete with another outcome",
            )),
        }
    }

    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream> {
        let next = if start > 0 {
            start
        } else {
            self.shared.read().revision() + 1
        };
        // Fail now, not on the first poll, when the start is already compacted.
        self.shared.read().events_from(prefix, next, 0)?;
        let watcher = Watcher {
            shared: self.shared.clone(),
            head: self.shared.head.clone(),
            prefix: prefix.to_owned(),
            next,
            unreported: false,
            last_report: Instant::now(),
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watcher,
            Watcher::next_batch,
        )))
    }

    /// Finishes the writes queued before it and closes the file (releasing its lock) before
    /// returning; every later write fails with [`StoreError::Closed`] and open watches end.
    async fn close(&self) {
        // An error means the writer has stopped already: closed by an earlier call.
        let _ = self.submit(Op::Close).await;
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.submit(Op::Compact(revision)).await.map(|_| ())
    }
}

/// One watch's position in the shared history. It holds no queue of its own: a slow consumer
/// costs nothing until compaction passes it, and then it ends with [`StoreError::Compacted`].
struct Watcher {
    shared: Arc<Shared>,
    head: watch::Receiver<Revision>,
    prefix: String,
    /// The first revision not examined yet.
    next: Revision,
    /// Revisions were examined (none matched) since the last batch went out.
    unreported: bool,
    last_report: Instant,
    finished: bool,
}

impl Watcher {
    async fn next_batch(mut self) -> Option<(Result<WatchBatch>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            // Mark the head as seen before reading, so a commit in between still wakes us.
            self.head.borrow_and_update();
            let scanned = self
                .shared
                .read()
                .events_from(&self.prefix, self.next, MAX_WATCH_BATCH);
            let (events, examined) = match scanned {
                Ok(found) => found,
                Err(error) => return Some((Err(error), self.finish())),
            };
            if examined >= self.next {
                self.next = examined + 1;
                self.unreported = true;
            }
            if !events.is_empty() {
                return Some((Ok(self.report(events)), self));
            }
            let report_at = self.last_report + PROGRESS_INTERVAL;
            let changed = if self.unreported {
                tokio::select! {
                    changed = self.head.changed() => changed,
                    () = tokio::time::sleep_until(report_at) => {
                        return Some((Ok(self.report(Vec::new())), self));
                    }
                }
            } else {
                self.head.changed().await
            };
            if changed.is_err() {
                return Some((Err(StoreError::Closed), self.finish()));
            }
        }
    }

    /// A batch complete up to the last examined revision (a progress report when `events` is empty).
    fn report(&mut self, events: Vec<Event>) -> WatchBatch {
        self.unreported = false;
        self.last_report = Instant::now();
        WatchBatch {
            events,
            revision: self.next - 1,
        }
    }

    fn finish(mut self) -> Self {
        self.finished = true;
        self
    }
}
