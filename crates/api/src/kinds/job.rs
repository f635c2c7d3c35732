//! Jobs (batch/v1): upstream's `pkg/registry/batch/job/strategy.go` (the generated selector and
//! its labels), the Job parts of the defaulters, `pkg/apis/batch/validation` and the printer's
//! columns. The spec rules are shared with CronJob's `jobTemplate` (`kinds/cronjob.rs`).

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::defaults::{self, set_default};
use crate::error::Cause;
use crate::json::{count, items, text};
use crate::kinds::Strategy;
use crate::proto::pod::POD_TEMPLATE_SPEC;
use crate::proto::{Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::selector::LabelSelector;
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, containers_and_images, or_none};
use crate::{time, validate};

pub type Typed = k8s_openapi::api::batch::v1::Job;

/// The label the generated selector selects (upstream's `batch.ControllerUidLabel`).
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The job's name on its pods (`batch.JobNameLabel`).
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The older spellings upstream still adds.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// An Indexed Job's pod index, as annotation and label.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The finalizer the controller puts on every pod it tracks.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Indexed Jobs may have at most this many completions (and parallelism).
const MAX_INDEXED_COMPLETIONS: i64 = 100_000;

pub const RESOURCE: ResourceType = ResourceType {
    categories: &["all"],
    protobuf: Some(JOB),
    subresources: &[status("batch", "v1", "Job")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &JobStrategy,
    ..entry("batch", "Job", "jobs", "job", true, round_trip::<Typed>)
};

/// The protobuf layout of a Job (`kubectl create job` sends protobuf, as client-go's typed
/// clients do); its pod template is the core/v1 one.
pub(crate) const JOB_SPEC: &[Field] = &[
    f(1, "parallelism", Kind::OptionalInt),
    f(2, "completions", Kind::OptionalInt),
    f(3, "activeDeadlineSeconds", Kind::OptionalInt),
    f(4, "selector", Kind::Message(LABEL_SELECTOR)),
    f(5, "manualSelector", Kind::OptionalBool),
    f(6, "template", Kind::Message(POD_TEMPLATE_SPEC)),
    f(7, "backoffLimit", Kind::OptionalInt),
    f(8, "ttlSecondsAfterFinished", Kind::OptionalInt),
    f(9, "completionMode", Kind::OptionalString),
    f(10, "suspend", Kind::OptionalBool),
    f(
        11,
        "podFailurePolicy",
        Kind::Message(&[many(1, "rules", Kind::Message(POD_FAILURE_POLICY_RULE))]),
    ),
    f(12, "backoffLimitPerIndex", Kind::OptionalInt),
    f(13, "maxFailedIndexes", Kind::OptionalInt),
    f(14, "podReplacementPolicy", Kind::OptionalString),
    f(15, "managedBy", Kind::OptionalString),
    f(
        16,
        "successPolicy",
        Kind::Message(&[many(
            1,
            "rules",
            Kind::Message(&[
                f(1, "succeededIndexes", Kind::OptionalString),
                f(2, "succeededCount", Kind::OptionalInt),
            ]),
        )]),
    ),
];
const POD_FAILURE_POLICY_RULE: &[Field] = &[
    f(1, "action", Kind::String),
    f(
        2,
        "onExitCodes",
        Kind::Message(&[
            f(1, "containerName", Kind::OptionalString),
            f(2, "operator", Kind::String),
            many(3, "values", Kind::Int),
        ]),
    ),
    many(
        3,
        "onPodConditions",
        Kind::Message(&[f(1, "type", Kind::String), f(2, "status", Kind::String)]),
    ),
];
const JOB: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(JOB_SPEC)),
];

const COLUMNS: &[Column] = &[
    NAME,
    Column {
        description: "Status of the job.",
        ..col("Status", "string", 0)
    },
    Column {
        description: "The completed job replicas.",
        ..col("Completions", "string", 0)
    },
    Column {
        description: "Time required to complete the job.",
        ..col("Duration", "string", 0)
    },
    AGE,
    col("Containers", "string", 1),
    col("Images", "string", 1),
    col("Selector", "string", 1),
];

/// Whether the job has condition `kind` with status True.
pub fn has_condition(job: &Value, kind: &str) -> bool {
    items(job, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == kind && text(c, "/status") == "True")
}

/// A selector as upstream's `FormatLabelSelector` prints it; `<none>` when there is none.
pub(crate) fn selector_text(selector: Option<&Value>) -> String {
    let text = selector
        .filter(|s| !s.is_null())
        .and_then(|s| LabelSelector::from_structured(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    or_none(&text)
}

fn cells(job: &Value, name: Value, age: Value, now: Timestamp) -> Vec<Value> {
    let status = if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if job.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let succeeded = count(job, "/status/succeeded");
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match count(job, "/spec/parallelism") {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let at = |pointer: &str| {
        job.pointer(pointer)
            .and_then(Value::as_str)
            .and_then(time::parse)
    };
    let duration = match (at("/status/startTime"), at("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => time::human_duration(now.as_second() - start.as_second()),
        (Some(start), Some(end)) => time::human_duration(end.as_second() - start.as_second()),
    };
    let (containers, images) = containers_and_images(items(job, "/spec/template/spec/containers"));
    vec![
        name,
        json!(status),
        json!(completions),
        json!(duration),
        age,
        json!(containers),
        json!(images),
        json!(selector_text(job.pointer("/spec/selector"))),
    ]
}

pub struct JobStrategy;

impl Strategy for JobStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    /// A new job's status is empty; unless its selector is manual, it gets the generated one
    /// and its template the labels that selector selects (upstream's `generateSelector`).
    fn prepare_for_create(&self, job: &mut Value) {
        crate::kinds::set_status(job, json!({}));
        let manual = job.pointer("/spec/manualSelector") == Some(&json!(true));
        if !manual {
            generate_selector(job);
        }
    }

    fn defaults(&self, job: &mut Value) {
        default_job(job);
    }

    fn validate(&self, job: &Value) -> Vec<Cause> {
        let empty = json!({});
        let spec = job.get("spec").unwrap_or(&empty);
        let mut causes = validate_job_spec(spec, "spec", true);
        causes.extend(validate_generated_selector(job));
        causes
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let empty = json!({});
        let spec = new.get("spec").unwrap_or(&empty);
        let mut causes = validate_job_spec(spec, "spec", true);
        let old_spec = old.get("spec").unwrap_or(&empty);
        for field in [
            "selector",
            "template",
            "completionMode",
            "podFailurePolicy",
            "backoffLimitPerIndex",
            "manualSelector",
        ] {
            if old_spec.get(field) != spec.get(field) {
                causes.push(Cause::invalid(
                    format!("spec.{field}"),
                    spec.get(field).unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
        }
        // Completions may change only with parallelism, on an Indexed Job (elastic jobs).
        let indexed = text(spec, "/completionMode") == "Indexed";
        if old_spec.get("completions") != spec.get("completions")
            && !(indexed && spec.get("completions") == spec.get("parallelism"))
        {
            causes.push(Cause::invalid(
                "spec.completions",
                spec.get("completions").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        causes
    }
}

fn default_job(job: &mut Value) {
    let Some(spec) = job.get_mut("spec") else {
        return;
    };
    default_job_spec(spec);
    // A job without labels of its own takes its template's (upstream's defaulter).
    let template_labels = spec.pointer("/template/metadata/labels").cloned();
    let own_empty = job
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    if let (Some(labels @ Value::Object(_)), true) = (template_labels, own_empty)
        && let Some(meta) = job.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("labels".into(), labels);
    }
}

/// The defaults of a job spec, in a Job and in a CronJob's `jobTemplate`.
pub(crate) fn default_job_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    let unset = |v: Option<&Value>| v.is_none_or(Value::is_null);
    if unset(spec.get("completions")) && unset(spec.get("parallelism")) {
        set_default(spec, "completions", json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let per_index = !unset(spec.get("backoffLimitPerIndex"));
    set_default(
        spec,
        "backoffLimit",
        json!(if per_index { i64::from(i32::MAX) } else { 6 }),
    );
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let replacement = if unset(spec.get("podFailurePolicy")) {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    set_default(spec, "manualSelector", json!(false));
    if let Some(template_spec) = spec.pointer_mut("/template/spec") {
        defaults::pod_spec(template_spec);
    }
}

fn generate_selector(job: &mut Value) {
    let name = text(job, "/metadata/name").to_string();
    let uid = text(job, "/metadata/uid").to_string();
    let Some(spec) = job.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "template", json!({}));
    let Some(template) = spec.get_mut("template").filter(|t| t.is_object()) else {
        return;
    };
    set_default(template, "metadata", json!({}));
    if let Some(meta) = template.get_mut("metadata") {
        set_default(meta, "labels", json!({}));
        // A label the user set is kept (a conflict is validation's to refuse).
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            for (key, value) in [
                (LEGACY_JOB_NAME_LABEL, &name),
                (JOB_NAME_LABEL, &name),
                (LEGACY_CONTROLLER_UID_LABEL, &uid),
                (CONTROLLER_UID_LABEL, &uid),
            ] {
                labels.entry(key).or_insert_with(|| json!(value));
            }
        }
    }
    set_default(spec, "selector", json!({}));
    if let Some(selector) = spec.get_mut("selector") {
        set_default(selector, "matchLabels", json!({}));
        if let Some(labels) = selector
            .get_mut("matchLabels")
            .and_then(Value::as_object_mut)
        {
            labels
                .entry(CONTROLLER_UID_LABEL)
                .or_insert_with(|| json!(uid));
        }
    }
}

/// A generated selector must select this job's uid, and the template carry it.
fn validate_generated_selector(job: &Value) -> Vec<Cause> {
    if job.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return Vec::new();
    }
    let uid = text(job, "/metadata/uid");
    let mut causes = Vec::new();
    let template_uid = job
        .pointer("/spec/template/metadata/labels")
        .and_then(|l| l.get(CONTROLLER_UID_LABEL));
    if template_uid.is_some_and(|v| v.as_str() != Some(uid)) {
        causes.push(Cause::invalid(
            format!("spec.template.metadata.labels[{CONTROLLER_UID_LABEL}]"),
            template_uid.unwrap_or(&Value::Null),
            &format!("must be '{uid}'"),
        ));
    }
    let selector_uid = job
        .pointer("/spec/selector/matchLabels")
        .and_then(|l| l.get(CONTROLLER_UID_LABEL));
    if selector_uid.is_some_and(|v| v.as_str() != Some(uid)) {
        causes.push(Cause::invalid(
            format!("spec.selector.matchLabels[{CONTROLLER_UID_LABEL}]"),
            selector_uid.unwrap_or(&Value::Null),
            &format!("must be '{uid}'"),
        ));
    }
    causes
}

/// The rules of a job spec at `field` (`spec`, or `spec.jobTemplate.spec` in a CronJob, where
/// the selector is not yet generated: `in_job` says which).
pub(crate) fn validate_job_spec(spec: &Value, field: &str, in_job: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    for name in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(value) = spec.get(name).and_then(Value::as_i64)
            && value < 0
        {
            causes.push(Cause::invalid(
                format!("{field}.{name}"),
                &json!(value),
                "must be greater than or equal to 0",
            ));
        }
    }
    let mode = spec.get("completionMode").unwrap_or(&Value::Null);
    match mode.as_str() {
        Some("NonIndexed") | None => {}
        Some("Indexed") => {
            match spec.get("completions").and_then(Value::as_i64) {
                None => causes.push(Cause::required(
                    format!("{field}.completions"),
                    "when completion mode is Indexed",
                )),
                Some(c) if c > MAX_INDEXED_COMPLETIONS => causes.push(Cause::invalid(
                    format!("{field}.completions"),
                    &json!(c),
                    &format!("must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"),
                )),
                Some(_) => {}
            }
            if let Some(p) = spec.get("parallelism").and_then(Value::as_i64)
                && p > MAX_INDEXED_COMPLETIONS
            {
                causes.push(Cause::invalid(
                    format!("{field}.parallelism"),
                    &json!(p),
                    &format!("must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"),
                ));
            }
        }
        Some(_) => causes.push(Cause::not_supported(
            format!("{field}.completionMode"),
            mode,
            &["NonIndexed", "Indexed"],
        )),
    }
    let selector = spec.get("selector").filter(|s| !s.is_null());
    let manual = spec.get("manualSelector") == Some(&json!(true));
    match selector {
        None if in_job => causes.push(Cause::required(format!("{field}.selector"), "")),
        Some(selector) if !in_job && !manual => causes.push(Cause::invalid(
            format!("{field}.selector"),
            selector,
            "`selector` will be auto-generated",
        )),
        Some(selector) => {
            causes.extend(validate::labels(
                selector.get("matchLabels"),
                &format!("{field}.selector.matchLabels"),
            ));
            match LabelSelector::from_structured(selector) {
                Ok(parsed) => {
                    let labels = spec.pointer("/template/metadata/labels");
                    if !parsed.matches(labels.and_then(Value::as_object)) {
                        causes.push(Cause::invalid(
                            format!("{field}.template.metadata.labels"),
                            labels.unwrap_or(&Value::Null),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
                Err(error) => causes.push(Cause::invalid(
                    format!("{field}.selector"),
                    selector,
                    &error.to_string(),
                )),
            }
        }
        None => {}
    }
    causes.extend(validate::labels(
        spec.pointer("/template/metadata/labels"),
        &format!("{field}.template.metadata.labels"),
    ));
    match spec.pointer("/template/spec") {
        Some(template_spec) => {
            let policy = template_spec.get("restartPolicy").unwrap_or(&Value::Null);
            if !matches!(policy.as_str(), Some("OnFailure" | "Never")) {
                causes.push(Cause::not_supported(
                    format!("{field}.template.spec.restartPolicy"),
                    policy,
                    &["OnFailure", "Never"],
                ));
            }
            causes.extend(validate::pod_spec(
                template_spec,
                &format!("{field}.template.spec"),
            ));
        }
        None => causes.push(Cause::required(
            format!("{field}.template.spec.containers"),
            "",
        )),
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pi() -> Value {
        let mut job = json!({
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "perl"}]}}}
        });
        JobStrategy.prepare_for_create(&mut job);
        JobStrategy.defaults(&mut job);
        job
    }

    #[test]
    fn a_job_gets_upstreams_defaults_and_generated_selector() {
        let job = pi();
        let spec = &job["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {CONTROLLER_UID_LABEL: "u-1"}})
        );
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels[LEGACY_JOB_NAME_LABEL], "pi");
        assert_eq!(labels[LEGACY_CONTROLLER_UID_LABEL], "u-1");
        assert_eq!(job["metadata"]["labels"], *labels);
        assert_eq!(validate::create(&RESOURCE, &job), vec![]);
    }

    #[test]
    fn parallelism_alone_leaves_completions_unset() {
        let mut spec = json!({"parallelism": 3});
        default_job_spec(&mut spec);
        assert!(spec.get("completions").is_none());
    }

    #[test]
    fn restart_policy_always_is_refused_with_upstreams_message() {
        let mut job = pi();
        job["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let causes = validate::create(&RESOURCE, &job);
        assert_eq!(causes[0].field, "spec.template.spec.restartPolicy");
        assert_eq!(
            causes[0].message,
            "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
    }

    #[test]
    fn the_template_is_immutable() {
        let old = pi();
        let mut new = pi();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        let causes = validate::update(&RESOURCE, &old, &new);
        assert_eq!(causes[0].field, "spec.template");
        assert!(causes[0].message.ends_with("field is immutable"));
        let mut parallel = pi();
        parallel["spec"]["parallelism"] = json!(4);
        assert_eq!(validate::update(&RESOURCE, &old, &parallel), vec![]);
    }

    #[test]
    fn indexed_needs_completions() {
        let mut job = pi();
        job["spec"]["completionMode"] = json!("Indexed");
        job["spec"].as_object_mut().map(|s| s.remove("completions"));
        let causes = validate::create(&RESOURCE, &job);
        assert_eq!(causes[0].field, "spec.completions");
    }

    #[test]
    fn the_row_reads_like_kubectl() {
        let mut job = pi();
        job["status"] = json!({"succeeded": 1, "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:00:09Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        let row = crate::table::cells(&RESOURCE, &job, Timestamp::now());
        assert_eq!(row[1], "Complete");
        assert_eq!(row[2], "1/1");
        assert_eq!(row[3], "9s");
        assert_eq!(row[7], format!("{CONTROLLER_UID_LABEL}=u-1"));
    }
}
