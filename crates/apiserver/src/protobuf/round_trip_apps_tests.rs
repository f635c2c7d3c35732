//! Protobuf round trips of apps/v1 workloads and the core/v1 ReplicationController: built in `k8s-pb`'s structs, encoded by prost, decoded by
//! petset, compared with the JSON form (see `round_trip_tests`).

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Value, json};

use super::round_trip_tests::{
    assert_round_trip, map, named_port, object_meta, object_meta_json, pod_spec, pod_spec_json,
    port, quantities, s, selector, selector_json, strings, time,
};

/// The JSON form read by k8s-openapi's struct of the kind and written back is unchanged: every
/// name the layouts give is one upstream's JSON knows (k8s-openapi drops any other).
fn assert_known_to_k8s_openapi<T>(expected: &Value)
where
    T: k8s_openapi::serde::de::DeserializeOwned + k8s_openapi::serde::Serialize,
{
    let typed: T = serde_json::from_value(expected.clone()).expect("k8s-openapi reads the object");
    let mut written = serde_json::to_value(typed).expect("serializes");
    let strip_type = |object: &mut Value| {
        if let Some(object) = object.as_object_mut() {
            object.remove("apiVersion");
            object.remove("kind");
        }
    };
    strip_type(&mut written);
    // k8s-openapi writes the type of a StatefulSet's claim templates too, as upstream does not.
    if let Some(Value::Array(claims)) = written.pointer_mut("/spec/volumeClaimTemplates") {
        claims.iter_mut().for_each(strip_type);
    }
    assert_eq!(
        &written, expected,
        "k8s-openapi's reading (left) and the JSON form (right)"
    );
}

/// Both checks: the protobuf decodes to `expected`, which k8s-openapi reads back unchanged.
fn check<T, M>(api_version: &str, kind: &str, object: &M, expected: Value)
where
    T: k8s_openapi::serde::de::DeserializeOwned + k8s_openapi::serde::Serialize,
    M: prost::Message + Default + PartialEq + std::fmt::Debug,
{
    assert_known_to_k8s_openapi::<T>(&expected);
    assert_round_trip(api_version, kind, object, expected);
}

const EARLIER: &str = "2023-11-14T22:13:20Z";
const LATER: &str = "2023-11-14T22:15:00Z";

fn template() -> Option<core::PodTemplateSpec> {
    Some(core::PodTemplateSpec {
        metadata: Some(meta::ObjectMeta {
            labels: map(&[("app", "web")]),
            ..Default::default()
        }),
        spec: Some(pod_spec()),
    })
}

fn template_json() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec_json()})
}

/// A claim with every field of its spec and status set; `name` tells templates apart.
fn claim(name: &str) -> core::PersistentVolumeClaim {
    core::PersistentVolumeClaim {
        metadata: Some(meta::ObjectMeta {
            name: s(name),
            labels: map(&[("claim", name)]),
            ..Default::default()
        }),
        spec: Some(core::PersistentVolumeClaimSpec {
            access_modes: strings(&["ReadWriteOnce", "ReadOnlyMany"]),
            selector: selector("disk", "ssd"),
            resources: Some(core::VolumeResourceRequirements {
                limits: quantities(&[("storage", "2Gi")]),
                requests: quantities(&[("storage", "1Gi")]),
            }),
            volume_name: s("pv-1"),
            storage_class_name: s(""),
            volume_mode: s("Block"),
            data_source: Some(core::TypedLocalObjectReference {
                api_group: s(""),
                kind: s("PersistentVolumeClaim"),
                name: s("origin"),
            }),
            data_source_ref: Some(core::TypedObjectReference {
                api_group: s("snapshot.storage.k8s.io"),
                kind: s("VolumeSnapshot"),
                name: s("snap"),
                namespace: s("backups"),
            }),
            volume_attributes_class_name: s("gold"),
        }),
        status: Some(core::PersistentVolumeClaimStatus {
            phase: s("Bound"),
            access_modes: strings(&["ReadWriteOnce"]),
            capacity: quantities(&[("storage", "1Gi")]),
            conditions: vec![core::PersistentVolumeClaimCondition {
                r#type: s("Resizing"),
                status: s("True"),
                last_probe_time: time(1_700_000_000),
                last_transition_time: time(1_700_000_100),
                reason: s("Expanding"),
                message: s("waiting for the driver"),
            }],
            allocated_resources: quantities(&[("storage", "2Gi")]),
            allocated_resource_statuses: map(&[("storage", "ControllerResizeInProgress")]),
            current_volume_attributes_class_name: s(""),
            modify_volume_status: Some(core::ModifyVolumeStatus {
                target_volume_attributes_class_name: s("platinum"),
                status: s("InProgress"),
            }),
        }),
    }
}

fn claim_json(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"claim": name}},
        "spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "selector": selector_json("disk", "ssd"),
            "resources": {"limits": {"storage": "2Gi"}, "requests": {"storage": "1Gi"}},
            "volumeName": "pv-1", "storageClassName": "", "volumeMode": "Block",
            "dataSource": {"apiGroup": "", "kind": "PersistentVolumeClaim", "name": "origin"},
            "dataSourceRef": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                "name": "snap", "namespace": "backups"},
            "volumeAttributesClassName": "gold"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "conditions": [{"type": "Resizing", "status": "True", "lastProbeTime": EARLIER,
                "lastTransitionTime": LATER, "reason": "Expanding",
                "message": "waiting for the driver"}],
            "allocatedResources": {"storage": "2Gi"},
            "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"},
            "currentVolumeAttributesClassName": "",
            "modifyVolumeStatus": {"targetVolumeAttributesClassName": "platinum",
                "status": "InProgress"}}
    })
}

/// The condition shape ReplicaSets, StatefulSets, DaemonSets and ReplicationControllers share,
/// as JSON.
fn condition_json(kind: &str) -> Value {
    json!({"type": kind, "status": "False", "lastTransitionTime": LATER,
        "reason": "Observed", "message": "seen by the controller"})
}

#[test]
fn a_deployment_with_every_field_decodes_to_its_json() {
    let deployment = apps::Deployment {
        metadata: Some(object_meta()),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: selector("app", "web"),
            template: template(),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: named_port("25%"),
                    max_surge: port(0),
                }),
            }),
            min_ready_seconds: Some(5),
            revision_history_limit: Some(0),
            paused: Some(true),
            progress_deadline_seconds: Some(600),
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(3),
            replicas: Some(4),
            updated_replicas: Some(3),
            ready_replicas: Some(2),
            available_replicas: Some(2),
            unavailable_replicas: Some(2),
            terminating_replicas: Some(0),
            conditions: vec![apps::DeploymentCondition {
                r#type: s("Progressing"),
                status: s("True"),
                last_update_time: time(1_700_000_000),
                last_transition_time: time(1_700_000_100),
                reason: s("NewReplicaSetAvailable"),
                message: s("rolled out"),
            }],
            collision_count: Some(1),
        }),
    };
    check::<k8s_openapi::api::apps::v1::Deployment, _>(
        "apps/v1",
        "Deployment",
        &deployment,
        json!({
            "metadata": object_meta_json(),
            "spec": {"replicas": 0, "selector": selector_json("app", "web"),
                "template": template_json(),
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0}},
                "minReadySeconds": 5, "revisionHistoryLimit": 0, "paused": true,
                "progressDeadlineSeconds": 600},
            "status": {"observedGeneration": 3, "replicas": 4, "updatedReplicas": 3,
                "readyReplicas": 2, "availableReplicas": 2, "unavailableReplicas": 2,
                "terminatingReplicas": 0,
                "conditions": [{"type": "Progressing", "status": "True",
                    "lastUpdateTime": EARLIER, "lastTransitionTime": LATER,
                    "reason": "NewReplicaSetAvailable", "message": "rolled out"}],
                "collisionCount": 1}
        }),
    );
}

/// Go's marshaller writes every non-pointer scalar, zero or not: the zeros of plain fields
/// are left out as Go's JSON leaves them, a pointer's zero is kept.
#[test]
fn a_deployments_plain_zeros_are_left_out_and_its_pointer_zeros_kept() {
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("idle"),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            min_ready_seconds: Some(0),
            paused: Some(false),
            progress_deadline_seconds: Some(0),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            collision_count: Some(0),
            ..Default::default()
        }),
    };
    assert_round_trip(
        "apps/v1",
        "Deployment",
        &deployment,
        json!({"metadata": {"name": "idle"},
            "spec": {"replicas": 0, "progressDeadlineSeconds": 0},
            "status": {"collisionCount": 0}}),
    );
}

#[test]
fn a_replica_set_with_every_field_decodes_to_its_json() {
    let replica_set = apps::ReplicaSet {
        metadata: Some(object_meta()),
        spec: Some(apps::ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: Some(10),
            selector: selector("app", "web"),
            template: template(),
        }),
        status: Some(apps::ReplicaSetStatus {
            replicas: Some(3),
            fully_labeled_replicas: Some(3),
            ready_replicas: Some(2),
            available_replicas: Some(1),
            terminating_replicas: Some(0),
            observed_generation: Some(7),
            conditions: vec![apps::ReplicaSetCondition {
                r#type: s("ReplicaFailure"),
                status: s("False"),
                last_transition_time: time(1_700_000_100),
                reason: s("Observed"),
                message: s("seen by the controller"),
            }],
        }),
    };
    check::<k8s_openapi::api::apps::v1::ReplicaSet, _>(
        "apps/v1",
        "ReplicaSet",
        &replica_set,
        json!({
            "metadata": object_meta_json(),
            "spec": {"replicas": 0, "minReadySeconds": 10,
                "selector": selector_json("app", "web"), "template": template_json()},
            "status": {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 2,
                "availableReplicas": 1, "terminatingReplicas": 0, "observedGeneration": 7,
                "conditions": [condition_json("ReplicaFailure")]}
        }),
    );
}

#[test]
fn a_stateful_set_with_every_field_and_whole_claim_templates_decodes_to_its_json() {
    let stateful_set = apps::StatefulSet {
        metadata: Some(object_meta()),
        spec: Some(apps::StatefulSetSpec {
            replicas: Some(0),
            selector: selector("app", "web"),
            template: template(),
            volume_claim_templates: vec![claim("data"), claim("logs")],
            service_name: s("web-headless"),
            pod_management_policy: s("Parallel"),
            update_strategy: Some(apps::StatefulSetUpdateStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    max_unavailable: named_port("50%"),
                }),
            }),
            revision_history_limit: Some(0),
            min_ready_seconds: Some(15),
            persistent_volume_claim_retention_policy: Some(
                apps::StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: s("Delete"),
                    when_scaled: s("Retain"),
                },
            ),
            ordinals: Some(apps::StatefulSetOrdinals { start: Some(1) }),
        }),
        status: Some(apps::StatefulSetStatus {
            observed_generation: Some(2),
            replicas: Some(3),
            ready_replicas: Some(2),
            current_replicas: Some(1),
            updated_replicas: Some(2),
            current_revision: s("web-6d4cf56db6"),
            update_revision: s("web-7b9c8f5d44"),
            collision_count: Some(0),
            conditions: vec![apps::StatefulSetCondition {
                r#type: s("Available"),
                status: s("False"),
                last_transition_time: time(1_700_000_100),
                reason: s("Observed"),
                message: s("seen by the controller"),
            }],
            available_replicas: Some(2),
        }),
    };
    check::<k8s_openapi::api::apps::v1::StatefulSet, _>(
        "apps/v1",
        "StatefulSet",
        &stateful_set,
        json!({
            "metadata": object_meta_json(),
            "spec": {"replicas": 0, "selector": selector_json("app", "web"),
                "template": template_json(),
                "volumeClaimTemplates": [claim_json("data"), claim_json("logs")],
                "serviceName": "web-headless", "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"partition": 0, "maxUnavailable": "50%"}},
                "revisionHistoryLimit": 0, "minReadySeconds": 15,
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete",
                    "whenScaled": "Retain"},
                "ordinals": {"start": 1}},
            "status": {"observedGeneration": 2, "replicas": 3, "readyReplicas": 2,
                "currentReplicas": 1, "updatedReplicas": 2,
                "currentRevision": "web-6d4cf56db6", "updateRevision": "web-7b9c8f5d44",
                "collisionCount": 0, "conditions": [condition_json("Available")],
                "availableReplicas": 2}
        }),
    );
}

#[test]
fn a_daemon_set_with_every_field_decodes_to_its_json() {
    let daemon_set = apps::DaemonSet {
        metadata: Some(object_meta()),
        spec: Some(apps::DaemonSetSpec {
            selector: selector("app", "web"),
            template: template(),
            update_strategy: Some(apps::DaemonSetUpdateStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDaemonSet {
                    max_unavailable: port(0),
                    max_surge: named_port("10%"),
                }),
            }),
            min_ready_seconds: Some(20),
            revision_history_limit: Some(0),
        }),
        status: Some(apps::DaemonSetStatus {
            current_number_scheduled: Some(5),
            number_misscheduled: Some(1),
            desired_number_scheduled: Some(6),
            number_ready: Some(4),
            observed_generation: Some(9),
            updated_number_scheduled: Some(3),
            number_available: Some(4),
            number_unavailable: Some(2),
            collision_count: Some(0),
            conditions: vec![apps::DaemonSetCondition {
                r#type: s("Progressing"),
                status: s("False"),
                last_transition_time: time(1_700_000_100),
                reason: s("Observed"),
                message: s("seen by the controller"),
            }],
        }),
    };
    check::<k8s_openapi::api::apps::v1::DaemonSet, _>(
        "apps/v1",
        "DaemonSet",
        &daemon_set,
        json!({
            "metadata": object_meta_json(),
            "spec": {"selector": selector_json("app", "web"), "template": template_json(),
                "updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "10%"}},
                "minReadySeconds": 20, "revisionHistoryLimit": 0},
            "status": {"currentNumberScheduled": 5, "numberMisscheduled": 1,
                "desiredNumberScheduled": 6, "numberReady": 4, "observedGeneration": 9,
                "updatedNumberScheduled": 3, "numberAvailable": 4, "numberUnavailable": 2,
                "collisionCount": 0, "conditions": [condition_json("Progressing")]}
        }),
    );
}

#[test]
fn a_controller_revision_carries_its_data_as_json() {
    let data = json!({"spec": {"template": {"$patch": "replace",
        "metadata": {"labels": {"app": "web"}}}}});
    let revision = apps::ControllerRevision {
        metadata: Some(object_meta()),
        data: Some(RawExtension {
            raw: Some(serde_json::to_vec(&data).expect("serializes")),
        }),
        revision: Some(4),
    };
    check::<k8s_openapi::api::apps::v1::ControllerRevision, _>(
        "apps/v1",
        "ControllerRevision",
        &revision,
        json!({"metadata": object_meta_json(), "data": data, "revision": 4}),
    );
}

#[test]
fn a_replication_controller_with_every_field_decodes_to_its_json() {
    let controller = core::ReplicationController {
        metadata: Some(object_meta()),
        spec: Some(core::ReplicationControllerSpec {
            replicas: Some(0),
            min_ready_seconds: Some(30),
            selector: map(&[("app", "web"), ("tier", "")]),
            template: template(),
        }),
        status: Some(core::ReplicationControllerStatus {
            replicas: Some(2),
            fully_labeled_replicas: Some(2),
            ready_replicas: Some(1),
            available_replicas: Some(1),
            observed_generation: Some(5),
            conditions: vec![core::ReplicationControllerCondition {
                r#type: s("ReplicaFailure"),
                status: s("False"),
                last_transition_time: time(1_700_000_100),
                reason: s("Observed"),
                message: s("seen by the controller"),
            }],
        }),
    };
    check::<k8s_openapi::api::core::v1::ReplicationController, _>(
        "v1",
        "ReplicationController",
        &controller,
        json!({
            "metadata": object_meta_json(),
            "spec": {"replicas": 0, "minReadySeconds": 30,
                "selector": {"app": "web", "tier": ""}, "template": template_json()},
            "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1,
                "availableReplicas": 1, "observedGeneration": 5,
                "conditions": [condition_json("ReplicaFailure")]}
        }),
    );
}

#[test]
fn a_persistent_volume_claim_with_every_field_decodes_to_its_json() {
    let mut object = claim("data");
    object.metadata = Some(object_meta());
    let mut expected = claim_json("data");
    expected["metadata"] = object_meta_json();
    check::<k8s_openapi::api::core::v1::PersistentVolumeClaim, _>(
        "v1",
        "PersistentVolumeClaim",
        &object,
        expected,
    );
}
