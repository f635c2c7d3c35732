//! The Job controller, as upstream's (`pkg/controller/job`): pods for `parallelism` and
//! `completions` (NonIndexed `<job>-xxxxx`, Indexed `<job>-<index>-xxxxx` with the completion
//! index as annotation, label, hostname and `JOB_COMPLETION_INDEX`), the pod failure back-off
//! (10 s doubling, at most 10 minutes, counted from the last failure after the last success),
//! `backoffLimit`, `activeDeadlineSeconds`, `suspend`, `ttlSecondsAfterFinished` (a foreground
//! delete, as upstream's TTL-after-finished controller) and status with upstream's conditions.
//!
//! Terminated pods are counted the way upstream tracks them with finalizers: every pod is made
//! with `batch.kubernetes.io/job-tracking`; a finished pod's uid goes into
//! `status.uncountedTerminatedPods` first, then its finalizer is removed, then it moves into
//! `succeeded`/`failed` (or `completedIndexes`). A pod is so counted exactly once, whatever
//! the cache shows and however often the controller restarts. The decisions are `plan`'s.

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::{Client, Resource, ResourceExt};
use petset_api::kinds::job::TRACKING_FINALIZER;
use serde_json::{Value, json};

use crate::cache::{Cache, key_of, version_of};
use crate::errors::is_not_found;
use crate::events::Recorder;
use crate::guarded::{self, Deleted};
use crate::queue::{Queue, resync_every};
use crate::runner::{self, Retry};
use petset_informer::finalizers::remove_finalizer;
use plan::{Backoff, Observed, PodView};

type Key = (String, String);

/// How long a sync waits for the pod cache to show its own writes.
const CATCH_UP: Duration = Duration::from_secs(5);
/// How often every job is looked at again, whatever happened.
const RESYNC: Duration = Duration::from_secs(30);

/// The failure back-off of each job (by uid): failures since its last success, and when
/// the last one was seen.
type Backoffs = Mutex<HashMap<String, Backoff>>;

struct Controller {
    client: Client,
    pods: Cache<Pod>,
    jobs: Cache<Job>,
    recorder: Recorder,
    backoffs: Backoffs,
    /// The highest pod resourceVersion each job's sync wrote.
    wrote: Mutex<HashMap<Key, u64>>,
}

/// Runs the controller until the task is aborted.
pub async fn run(client: Client) {
    let (queue, keys) = Queue::<Key>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let jobs = Cache::follow_keys(&mut helpers, &client, &queue, |job: &Job| Some(key_of(job)));
    let pods = Cache::follow_keys(&mut helpers, &client, &queue, |pod: &Pod| {
        owner_job(pod).map(|owner| (pod.namespace().unwrap_or_default(), owner.name.clone()))
    });
    {
        let (queue, jobs) = (queue.clone(), jobs.clone());
        resync_every(&mut helpers, RESYNC, move || {
            for job in jobs.store().state() {
                queue.add(key_of(job.as_ref()));
            }
        });
    }
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "job-controller"),
        client,
        pods,
        jobs,
        backoffs: Mutex::new(HashMap::new()),
        wrote: Mutex::new(HashMap::new()),
    };
    controller.pods.ready().await;
    controller.jobs.ready().await;
    let controller = &controller;
    // Upstream's API back-off: 1 s doubling to a minute.
    let retry = Retry::exponential(Duration::from_secs(1), Duration::from_secs(60));
    runner::run("job", queue, keys, retry, |key: Key| async move {
        controller.sync(&key.0, &key.1).await
    })
    .await;
}

fn owner_job(pod: &Pod) -> Option<&OwnerReference> {
    pod.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Job" && o.api_version == "batch/v1")
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

impl Controller {
    async fn sync(&self, namespace: &str, name: &str) -> Result<Option<Duration>, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        let version = self
            .wrote
            .lock()
            .map(|w| w.get(&key).copied())
            .ok()
            .flatten();
        if let Some(version) = version {
            self.pods.caught_up(version, CATCH_UP).await;
        }
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let Some(job) = jobs.get_opt(name).await? else {
            self.release_orphans(namespace, name).await?;
            return Ok(None);
        };
        let uid = job.uid().unwrap_or_default();
        let owned: Vec<Arc<Pod>> = self
            .pods
            .in_namespace(namespace)
            .into_iter()
            .filter(|p| owner_job(p).is_some_and(|o| o.uid == uid))
            .collect();
        let job_value = serde_json::to_value(&job).unwrap_or_default();
        let views: Vec<PodView> = owned.iter().map(|p| PodView::of(p)).collect();
        let now = Timestamp::now();
        let backoff = self
            .backoffs
            .lock()
            .ok()
            .and_then(|b| b.get(&uid).cloned())
            .unwrap_or_default();
        let observed = Observed {
            job: &job_value,
            pods: &views,
            now,
            backoff,
        };
        let decision = plan::decide(&observed);
        if let Ok(mut backoffs) = self.backoffs.lock() {
            backoffs.insert(uid.clone(), decision.backoff.clone());
        }
        // 1. Finished pods are written down as uncounted before their finalizers go.
        let mut status = job_value
            .get("status")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut job = job.clone();
        if let Some(first) = &decision.status_before_finalizers {
            status = first.clone();
            job = self.write_status(&jobs, &job, &status).await?;
        }
        // 2. Their finalizers go (and those of any pod of a finished or deleted job).
        let mut wrote_pods = 0u64;
        for pod in owned
            .iter()
            .filter(|p| decision.release.contains(&p.uid().unwrap_or_default()))
        {
            if has_finalizer(pod) {
                match remove_finalizer(&pods_api, pod.as_ref(), TRACKING_FINALIZER).await {
                    Ok(()) => {}
                    Err(error) if is_not_found(&error) => {}
                    Err(error) => return Err(error),
                }
                wrote_pods = wrote_pods.max(version_of(pod.as_ref()) + 1);
            }
        }
        // 3. Deletions and creations.
        for pod in owned
            .iter()
            .filter(|p| decision.delete.contains(&p.uid().unwrap_or_default()))
        {
            let pod_name = pod.name_any();
            if let Deleted::Done(_) =
                guarded::delete(&pods_api, &pod_name, &pod.uid().unwrap_or_default()).await?
            {
                self.recorder.pod_deleted(job.object_ref(&()), &pod_name);
            }
        }
        for index in &decision.create {
            let pod = plan::pod_for(&job_value, *index);
            let pod: Pod = match serde_json::from_value(pod) {
                Ok(pod) => pod,
                Err(error) => {
                    tracing::debug!(%error, "the job's template makes no pod");
                    break;
                }
            };
            match pods_api.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    wrote_pods = wrote_pods.max(version_of(&created));
                    self.recorder
                        .pod_created(job.object_ref(&()), &created.name_any());
                }
                Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => {
                    self.recorder
                        .pod_create_failed(job.object_ref(&()), &status.message);
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        if wrote_pods > 0
            && let Ok(mut wrote) = self.wrote.lock()
        {
            wrote.insert(key.clone(), wrote_pods);
        }
        // 4. Status: counts, conditions, times.
        let final_status = &decision.status;
        if *final_status != status {
            self.write_status(&jobs, &job, final_status).await?;
            for (type_, reason, message) in &decision.events {
                self.recorder
                    .record(job.object_ref(&()), type_, reason, message.clone());
            }
        }
        // 5. A finished job whose time to live is over goes, with its pods.
        if let Some(left) = decision.ttl_left {
            if left.is_zero() {
                let options = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    preconditions: Some(kube::api::Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match jobs.delete(name, &options).await {
                    Ok(_) => {}
                    Err(error) if is_not_found(&error) => {}
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(error) => return Err(error),
                }
                return Ok(None);
            }
            return Ok(Some(left));
        }
        Ok(decision.requeue)
    }

    async fn write_status(
        &self,
        jobs: &Api<Job>,
        job: &Job,
        status: &Value,
    ) -> Result<Job, kube::Error> {
        let mut updated = job.clone();
        updated.status = serde_json::from_value(status.clone()).ok();
        jobs.replace_status(&job.name_any(), &PostParams::default(), &updated)
            .await
    }

    /// A job is gone: its pods' finalizers go, so the garbage collector can take them.
    async fn release_orphans(&self, namespace: &str, name: &str) -> Result<(), kube::Error> {
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let live: std::collections::HashSet<String> = self.jobs.uids();
        for pod in self.pods.in_namespace(namespace) {
            let orphaned =
                owner_job(&pod).is_some_and(|o| o.name == name && !live.contains(&o.uid));
            if orphaned && has_finalizer(&pod) {
                match remove_finalizer(&pods_api, pod.as_ref(), TRACKING_FINALIZER).await {
                    Ok(()) => {}
                    Err(error) if is_not_found(&error) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        if let Ok(mut backoffs) = self.backoffs.lock() {
            backoffs.retain(|uid, _| live.contains(uid));
        }
        Ok(())
    }
}
