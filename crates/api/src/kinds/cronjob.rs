//! CronJobs (batch/v1): upstream's `pkg/registry/batch/cronjob/strategy.go`, the CronJob
//! parts of the defaulters, `pkg/apis/batch/validation` and the printer's columns. Schedules
//! are parsed by `crate::cron`.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::cron::{Schedule, time_zone};
use crate::defaults::{self, set_default};
use crate::error::Cause;
use crate::json::{items, text};
use crate::kinds::job::{JOB_SPEC, selector_text, validate_job_spec};
use crate::kinds::{Strategy, set_status};
use crate::proto::{Field, Kind, OBJECT_META, f};
use crate::resources::{ResourceType, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, containers_and_images, or_none};
use crate::time;

pub type Typed = k8s_openapi::api::batch::v1::CronJob;

/// A CronJob's name leaves room for the 11 characters of its jobs' suffix.
const MAX_NAME: usize = 52;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["cj"],
    categories: &["all"],
    subresources: &[status("batch", "v1", "CronJob")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &CronJobStrategy,
    // `kubectl create cronjob` sends protobuf.
    protobuf: Some(CRON_JOB),
    ..entry(
        "batch",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of a CronJob: its job template is a Job's spec.
const CRON_JOB: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "schedule", Kind::String),
            f(2, "startingDeadlineSeconds", Kind::OptionalInt),
            f(3, "concurrencyPolicy", Kind::String),
            f(4, "suspend", Kind::OptionalBool),
            f(
                5,
                "jobTemplate",
                Kind::Message(&[
                    f(1, "metadata", Kind::Message(OBJECT_META)),
                    f(2, "spec", Kind::Message(JOB_SPEC)),
                ]),
            ),
            f(6, "successfulJobsHistoryLimit", Kind::OptionalInt),
            f(7, "failedJobsHistoryLimit", Kind::OptionalInt),
            f(8, "timeZone", Kind::OptionalString),
        ]),
    ),
];

const COLUMNS: &[Column] = &[
    NAME,
    Column {
        description: "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
        ..col("Schedule", "string", 0)
    },
    Column {
        description: "The time zone for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones",
        ..col("Timezone", "string", 0)
    },
    Column {
        description: "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.",
        ..col("Suspend", "boolean", 0)
    },
    Column {
        description: "A list of pointers to currently running jobs.",
        ..col("Active", "integer", 0)
    },
    Column {
        description: "Information when was the last time the job was successfully scheduled.",
        ..col("Last Schedule", "string", 0)
    },
    AGE,
    col("Containers", "string", 1),
    col("Images", "string", 1),
    col("Selector", "string", 1),
];

fn cells(cronjob: &Value, name: Value, age: Value, now: Timestamp) -> Vec<Value> {
    let suspend = match cronjob.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last = match cronjob.pointer("/status/lastScheduleTime") {
        Some(Value::String(at)) => time::age(Some(at), now),
        _ => "<none>".to_string(),
    };
    let (containers, images) = containers_and_images(items(
        cronjob,
        "/spec/jobTemplate/spec/template/spec/containers",
    ));
    vec![
        name,
        json!(text(cronjob, "/spec/schedule")),
        json!(or_none(text(cronjob, "/spec/timeZone"))),
        json!(suspend),
        json!(items(cronjob, "/status/active").len()),
        json!(last),
        age,
        json!(containers),
        json!(images),
        json!(selector_text(
            cronjob.pointer("/spec/jobTemplate/spec/selector")
        )),
    ]
}

pub struct CronJobStrategy;

impl Strategy for CronJobStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, cronjob: &mut Value) {
        set_status(cronjob, json!({}));
    }

    fn defaults(&self, cronjob: &mut Value) {
        let Some(spec) = cronjob.get_mut("spec").filter(|s| s.is_object()) else {
            return;
        };
        set_default(spec, "concurrencyPolicy", json!("Allow"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "successfulJobsHistoryLimit", json!(3));
        set_default(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(template_spec) = spec.pointer_mut("/jobTemplate/spec/template/spec") {
            defaults::pod_spec(template_spec);
        }
    }

    fn validate(&self, cronjob: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let name = text(cronjob, "/metadata/name");
        if name.len() > MAX_NAME {
            causes.push(Cause::invalid(
                "metadata.name",
                &json!(name),
                "must be no more than 52 characters",
            ));
        }
        causes.extend(validate_spec(cronjob));
        causes
    }

    fn validate_update(&self, _old: &Value, new: &Value) -> Vec<Cause> {
        validate_spec(new)
    }
}

fn validate_spec(cronjob: &Value) -> Vec<Cause> {
    let empty = json!({});
    let spec = cronjob.get("spec").unwrap_or(&empty);
    let mut causes = Vec::new();
    let schedule = text(spec, "/schedule");
    if schedule.is_empty() {
        causes.push(Cause::required("spec.schedule", ""));
    } else {
        if schedule.contains("TZ") {
            causes.push(Cause::invalid(
                "spec.schedule",
                &json!(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
        if let Err(error) = Schedule::parse(schedule) {
            causes.push(Cause::invalid("spec.schedule", &json!(schedule), &error.0));
        }
    }
    if let Some(zone) = spec.get("timeZone").and_then(Value::as_str) {
        let problem = if zone.is_empty() {
            Some("timeZone must be nil or non-empty string".to_string())
        } else if zone.eq_ignore_ascii_case("local") {
            Some(
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                    .to_string(),
            )
        } else {
            time_zone(Some(zone)).err().map(|e| e.0)
        };
        if let Some(problem) = problem {
            causes.push(Cause::invalid("spec.timeZone", &json!(zone), &problem));
        }
    }
    let policy = spec.get("concurrencyPolicy").unwrap_or(&Value::Null);
    match policy.as_str() {
        Some("Allow" | "Forbid" | "Replace") => {}
        None | Some("") => causes.push(Cause::required("spec.concurrencyPolicy", "")),
        Some(_) => causes.push(Cause::not_supported(
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        if let Some(value) = spec.get(field).and_then(Value::as_i64)
            && value < 0
        {
            causes.push(Cause::invalid(
                format!("spec.{field}"),
                &json!(value),
                "must be greater than or equal to 0",
            ));
        }
    }
    let job_spec = spec.pointer("/jobTemplate/spec").unwrap_or(&empty);
    causes.extend(validate_job_spec(job_spec, "spec.jobTemplate.spec", false));
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    fn hello() -> Value {
        let mut cronjob = json!({
            "metadata": {"name": "hello"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "hello", "image": "busybox"}]}}}}}
        });
        CronJobStrategy.prepare_for_create(&mut cronjob);
        CronJobStrategy.defaults(&mut cronjob);
        cronjob
    }

    #[test]
    fn a_cronjob_gets_upstreams_defaults_and_is_valid() {
        let cronjob = hello();
        assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cronjob["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cronjob["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(cronjob["spec"]["suspend"], false);
        assert!(
            cronjob["spec"]["jobTemplate"]["spec"]
                .get("completions")
                .is_none()
        );
        assert_eq!(validate::create(&RESOURCE, &cronjob), vec![]);
    }

    #[test]
    fn schedules_time_zones_and_names_are_checked() {
        for (change, field) in [
            (
                json!({"schedule": "CRON_TZ=UTC * * * * *"}),
                "spec.schedule",
            ),
            (json!({"schedule": "* * *"}), "spec.schedule"),
            (json!({"timeZone": "Local"}), "spec.timeZone"),
            (json!({"timeZone": "Nowhere/Else"}), "spec.timeZone"),
            (
                json!({"concurrencyPolicy": "Sometimes"}),
                "spec.concurrencyPolicy",
            ),
        ] {
            let mut cronjob = hello();
            for (key, value) in change.as_object().expect("map") {
                cronjob["spec"][key] = value.clone();
            }
            let causes = validate::create(&RESOURCE, &cronjob);
            assert_eq!(
                causes.first().map(|c| c.field.as_str()),
                Some(field),
                "{change}"
            );
        }
        let mut long = hello();
        long["metadata"]["name"] = json!("a".repeat(53));
        assert_eq!(validate::create(&RESOURCE, &long)[0].field, "metadata.name");
    }

    #[test]
    fn the_row_reads_like_kubectl() {
        let mut cronjob = hello();
        cronjob["status"] = json!({"active": [{"name": "hello-1"}]});
        let row = crate::table::cells(&RESOURCE, &cronjob, Timestamp::now());
        assert_eq!(row[1], "*/1 * * * *");
        assert_eq!(row[2], "<none>");
        assert_eq!(row[3], "False");
        assert_eq!(row[4], 1);
        assert_eq!(row[5], "<none>");
    }
}
