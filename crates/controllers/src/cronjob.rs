//! The CronJob controller, as upstream's (`pkg/controller/cronjob`, v2): at each scheduled time
//! (`petset_api::cron`, in `spec.timeZone`) a Job `<cronjob>-<scheduled time in minutes since
//! the epoch>` from `jobTemplate`, unless suspended, past `startingDeadlineSeconds`, or held
//! back by `concurrencyPolicy` (Forbid skips, Replace deletes the running ones first);
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`; finished jobs beyond the
//! history limits deleted (background propagation, as upstream). Being named by their
//! scheduled time, the jobs of one time are made once whatever the controller's restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use petset_api::cron::{Schedule, time_zone};
use petset_api::json::{items, text};
use petset_api::kinds::job::has_condition;
use serde_json::{Value, json};

use crate::cache::{Cache, key_of};
use crate::errors::is_not_found;
use crate::events::Recorder;
use crate::queue::Queue;
use crate::runner::{self, Retry};

type Key = (String, String);

/// At most this many missed times are looked at (upstream gives up at 100 and says so).
const MISSED_LIMIT: usize = 100;

/// Runs the controller until the task is aborted.
pub async fn run(client: Client) {
    let (queue, keys) = Queue::<Key>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let cronjobs = Cache::follow_keys(&mut helpers, &client, &queue, |cj: &CronJob| {
        Some(key_of(cj))
    });
    let jobs = Cache::follow_keys(&mut helpers, &client, &queue, |job: &Job| {
        owner_cronjob(job).map(|owner| (job.namespace().unwrap_or_default(), owner))
    });
    cronjobs.ready().await;
    jobs.ready().await;
    let recorder = Recorder::new(client.clone(), "cronjob-controller");
    let (client, jobs, recorder) = (&client, &jobs, &recorder);
    let retry = Retry::exponential(Duration::from_secs(1), Duration::from_secs(60));
    runner::run("cronjob", queue, keys, retry, |key: Key| async move {
        sync(client, jobs, recorder, &key.0, &key.1).await
    })
    .await;
}

fn owner_cronjob(job: &Job) -> Option<String> {
    job.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "CronJob")
        .map(|o| o.name.clone())
}

/// The job name of a scheduled time: minutes since the epoch, as upstream's `getJobName`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The latest scheduled time in (`earliest`, `now`], and how many there were.
pub fn most_recent(
    schedule: &Schedule,
    zone: &jiff::tz::TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut latest = None;
    let mut missed = 0;
    let mut t = earliest;
    while let Some(next) = schedule.next(t, zone) {
        if next > now {
            break;
        }
        latest = Some(next);
        missed += 1;
        if missed > MISSED_LIMIT {
            // Too many to walk one by one: jump to a day before now, keep the latest.
            let jump = Timestamp::from_second(now.as_second() - 86_400).unwrap_or(now);
            if jump > next {
                t = jump;
                continue;
            }
        }
        t = next;
    }
    (latest, missed)
}

fn stamp(t: Timestamp) -> String {
    petset_api::time::format(t)
}

async fn sync(
    client: &Client,
    jobs_cache: &Cache<Job>,
    recorder: &Recorder,
    namespace: &str,
    name: &str,
) -> Result<Option<Duration>, kube::Error> {
    let api: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let Some(cronjob) = api.get_opt(name).await? else {
        return Ok(None);
    };
    if cronjob.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let uid = cronjob.uid().unwrap_or_default();
    let value = serde_json::to_value(&cronjob).unwrap_or_default();
    let spec = value.get("spec").cloned().unwrap_or_default();
    let mut status = value
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let before = status.clone();
    let now = Timestamp::now();
    let reference = cronjob.object_ref(&());

    // Its jobs, from the cache: running ones are active, finished ones history.
    let owned: Vec<Value> = jobs_cache
        .in_namespace(namespace)
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .filter_map(|j| serde_json::to_value(j.as_ref()).ok())
        .collect();
    let finished = |j: &Value| has_condition(j, "Complete") || has_condition(j, "Failed");
    let mut active_refs = Vec::new();
    for job in &owned {
        let job_name = text(job, "/metadata/name").to_string();
        if finished(job) {
            let was_active = items(&status, "/active")
                .iter()
                .any(|a| text(a, "/uid") == text(job, "/metadata/uid"));
            if was_active {
                let condition = if has_condition(job, "Complete") {
                    "Complete"
                } else {
                    "Failed"
                };
                recorder.record(
                    reference.clone(),
                    "Normal",
                    "SawCompletedJob",
                    format!("Saw completed job: {job_name}, condition: {condition}"),
                );
            }
            if has_condition(job, "Complete")
                && let Some(done) = job
                    .pointer("/status/completionTime")
                    .and_then(Value::as_str)
                && text(&status, "/lastSuccessfulTime") < done
            {
                status["lastSuccessfulTime"] = json!(done);
            }
        } else if job.pointer("/metadata/deletionTimestamp").is_none() {
            active_refs.push(
                json!({"kind": "Job", "namespace": namespace, "name": job_name,
                "uid": text(job, "/metadata/uid"), "apiVersion": "batch/v1",
                "resourceVersion": text(job, "/metadata/resourceVersion")}),
            );
        }
    }
    active_refs.sort_by(|a, b| text(a, "/name").cmp(text(b, "/name")));

    // History limits: the oldest finished jobs beyond them go.
    for (condition, field, default) in [
        ("Complete", "successfulJobsHistoryLimit", 3),
        ("Failed", "failedJobsHistoryLimit", 1),
    ] {
        let limit = spec
            .get(field)
            .and_then(Value::as_i64)
            .unwrap_or(default)
            .max(0) as usize;
        let mut done: Vec<&Value> = owned
            .iter()
            .filter(|j| {
                has_condition(j, condition) && j.pointer("/metadata/deletionTimestamp").is_none()
            })
            .collect();
        done.sort_by_key(|j| text(j, "/status/startTime").to_string());
        let excess = done.len().saturating_sub(limit);
        for job in done.into_iter().take(excess) {
            delete_job(&jobs, recorder, &reference, text(job, "/metadata/name")).await?;
        }
    }

    let mut requeue = None;
    let parsed = Schedule::parse(text(&spec, "/schedule"));
    let zone = time_zone(spec.get("timeZone").and_then(Value::as_str));
    match (parsed, zone) {
        (Err(error), _) => {
            recorder.record(
                reference.clone(),
                "Warning",
                "UnparseableSchedule",
                format!(
                    "unparseable schedule: {:?} : {}",
                    text(&spec, "/schedule"),
                    error
                ),
            );
        }
        (_, Err(_)) => {
            recorder.record(
                reference.clone(),
                "Warning",
                "UnknownTimeZone",
                format!("invalid timeZone: {:?}", text(&spec, "/timeZone")),
            );
        }
        (Ok(schedule), Ok(zone)) => {
            let created = value
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(petset_api::time::parse)
                .unwrap_or(now);
            let last = status
                .get("lastScheduleTime")
                .and_then(Value::as_str)
                .and_then(petset_api::time::parse);
            let mut earliest = last.unwrap_or(created);
            let deadline = spec.get("startingDeadlineSeconds").and_then(Value::as_i64);
            if let Some(deadline) = deadline
                && let Ok(limit) = Timestamp::from_second(now.as_second() - deadline)
                && limit > earliest
            {
                earliest = limit;
            }
            let (scheduled, missed) = most_recent(&schedule, &zone, earliest, now);
            if missed > MISSED_LIMIT {
                recorder.record(reference.clone(), "Warning", "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".to_string());
            }
            let suspended = spec.get("suspend") == Some(&json!(true));
            if let Some(scheduled) = scheduled.filter(|_| !suspended) {
                let too_late =
                    deadline.is_some_and(|d| scheduled.as_second() + d < now.as_second());
                let policy = text(&spec, "/concurrencyPolicy");
                let job_name = job_name(name, scheduled);
                let exists = owned.iter().any(|j| text(j, "/metadata/name") == job_name);
                if too_late || exists {
                    // Missed, or made already.
                } else if policy == "Forbid" && !active_refs.is_empty() {
                    recorder.record(reference.clone(), "Normal", "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid".to_string());
                } else {
                    if policy == "Replace" {
                        for active in std::mem::take(&mut active_refs) {
                            delete_job(&jobs, recorder, &reference, text(&active, "/name")).await?;
                        }
                    }
                    let job = job_from_template(&value, &job_name, Some(scheduled));
                    match serde_json::from_value::<Job>(job) {
                        Ok(job) => match jobs.create(&PostParams::default(), &job).await {
                            Ok(made) => {
                                recorder.record(
                                    reference.clone(),
                                    "Normal",
                                    "SuccessfulCreate",
                                    format!("Created job {job_name}"),
                                );
                                active_refs.push(json!({"kind": "Job", "namespace": namespace, "name": job_name,
                                    "uid": made.uid().unwrap_or_default(), "apiVersion": "batch/v1",
                                    "resourceVersion": made.resource_version().unwrap_or_default()}));
                            }
                            Err(kube::Error::Api(e)) if e.code == 409 => {}
                            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 403 => {
                                recorder.record(
                                    reference.clone(),
                                    "Warning",
                                    "FailedCreate",
                                    format!("Error creating job: {}", e.message),
                                );
                            }
                            Err(error) => return Err(error),
                        },
                        Err(error) => tracing::debug!(%error, "the job template makes no job"),
                    }
                    status["lastScheduleTime"] = json!(stamp(scheduled));
                }
            }
            if let Some(next) = schedule.next(now, &zone) {
                let wait = (next.as_second() - now.as_second()).max(0) as u64;
                // A little after the time, as upstream's `nextScheduleTimeDuration`.
                requeue = Some(Duration::from_secs(wait) + Duration::from_millis(100));
            }
        }
    }
    status["active"] = if active_refs.is_empty() {
        Value::Null
    } else {
        json!(active_refs)
    };
    if let Some(map) = status.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    if status != before {
        let mut updated = cronjob.clone();
        updated.status = serde_json::from_value(status).ok();
        api.replace_status(name, &PostParams::default(), &updated)
            .await?;
    }
    Ok(requeue)
}

async fn delete_job(
    jobs: &Api<Job>,
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    name: &str,
) -> Result<(), kube::Error> {
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            recorder.record(
                reference.clone(),
                "Normal",
                "SuccessfulDelete",
                format!("Deleted job {name}"),
            );
            Ok(())
        }
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error),
    }
}

/// A Job from the CronJob's `jobTemplate`, owned by it; with the scheduled time as upstream's
/// `batch.kubernetes.io/cronjob-scheduled-timestamp` annotation.
pub fn job_from_template(cronjob: &Value, job_name: &str, scheduled: Option<Timestamp>) -> Value {
    let template = cronjob
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or_default();
    let mut meta: BTreeMap<String, Value> = template
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    meta.remove("creationTimestamp");
    meta.insert("name".into(), json!(job_name));
    if let Some(at) = scheduled {
        let annotations = meta
            .entry("annotations".into())
            .or_insert_with(|| json!({}));
        if let Some(map) = annotations.as_object_mut() {
            map.insert(
                "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
                json!(stamp(at)),
            );
        }
    }
    meta.insert(
        "ownerReferences".into(),
        json!([{"apiVersion": "batch/v1", "kind": "CronJob",
        "name": text(cronjob, "/metadata/name"), "uid": text(cronjob, "/metadata/uid"),
        "controller": true, "blockOwnerDeletion": true}]),
    );
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or_default()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_named_by_their_scheduled_minute() {
        let at: Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        assert_eq!(
            job_name("hello", at),
            format!("hello-{}", at.as_second() / 60)
        );
    }

    #[test]
    fn the_most_recent_time_is_the_last_one_not_after_now() {
        let schedule = Schedule::parse("*/1 * * * *").expect("schedule");
        let from: Timestamp = "2026-01-01T00:00:30Z".parse().expect("time");
        let now: Timestamp = "2026-01-01T00:03:10Z".parse().expect("time");
        let (latest, missed) = most_recent(&schedule, &jiff::tz::TimeZone::UTC, from, now);
        assert_eq!(
            latest.map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T00:03:00Z")
        );
        assert_eq!(missed, 3);
        let (none, _) = most_recent(&schedule, &jiff::tz::TimeZone::UTC, now, now);
        assert_eq!(none, None);
    }
}
