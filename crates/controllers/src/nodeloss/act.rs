//! The node loss controller's writes: every one that destroys (a pod's delete releases its
//! identity, a claim's delete its data) is preceded by a confirmation with the API, at most
//! [`CONFIRMATION_LIFETIME`] old, that the node's Lease is still as this controller last saw
//! it, and a claim's also by reading the claim, its volume and its StatefulSet's consent
//! afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, Taint,
};
use kube::api::Api;
use kube::{Client, Resource, ResourceExt};

use super::claims::{self, LocalClaim, Storage};
use super::decisions::{
    self, CONFIRMATION_LIFETIME, DISRUPTION_MESSAGE, DISRUPTION_REASON, Failover, Fence, Loss,
    NodeLossConfig, OnNodeLoss,
};
use super::{Memory, Sightings, renew_time, texts};
use crate::cache::version_of;
use crate::events::Recorder;
use crate::guarded::{self, Deleted};
use crate::nodelifecycle::decisions::LEASE_NAMESPACE;

pub struct Writers {
    client: Client,
    events: Recorder,
}

impl Writers {
    pub fn new(client: Client) -> Self {
        Self {
            events: Recorder::new(client.clone(), "node-loss-controller"),
            client,
        }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    pub fn invalid_deadline(&self, node: &Node, value: &str) {
        tracing::warn!(node = %node.name_any(), value, "unreadable fence deadline annotation");
        self.events.record(
            node.object_ref(&()),
            "Warning",
            texts::INVALID_DEADLINE,
            texts::invalid_deadline(value),
        );
    }

    pub fn node_lost(&self, node: &Node, loss: &Loss) {
        tracing::warn!(node = %loss.node, silent_for = ?loss.silent_for, deadline = ?loss.deadline,
            "the fenced node is lost: failing over its StatefulSet pods");
        self.events.record(
            node.object_ref(&()),
            "Warning",
            texts::NODE_LOST,
            texts::node_lost(loss),
        );
    }

    /// Writes the node's taints (only if it is still as read); whether it was written.
    async fn write_taints(&self, node: &Node, taints: &[Taint], wrote: &mut u64) -> bool {
        match crate::taints::write(&self.nodes(), node, taints).await {
            Ok(written) => {
                *wrote = (*wrote).max(version_of(&written));
                true
            }
            Err(error) => {
                // Changed meanwhile: the next pass looks again.
                tracing::debug!(%error, node = %node.name_any(), "could not update the node's taints");
                false
            }
        }
    }

    /// Adds the fenced taint; whether the node has it now.
    pub async fn taint(&self, node: &Node, wrote: &mut u64) -> bool {
        match decisions::with_fenced_taint(node, jiff::Timestamp::now()) {
            None => true,
            Some(taints) => self.write_taints(node, &taints, wrote).await,
        }
    }

    /// Removes the fenced taint, if the node has it.
    pub async fn untaint(&self, node: &Node, wrote: &mut u64) {
        let Some(taints) = decisions::without_fenced_taint(node) else {
            return;
        };
        if self.write_taints(node, &taints, wrote).await {
            let message = match decisions::fence_of(node) {
                Fence::Deadline(_) => texts::node_returned(&node.name_any()),
                Fence::None | Fence::Invalid(_) => texts::node_unfenced(&node.name_any()),
            };
            self.events.record(
                node.object_ref(&()),
                "Normal",
                texts::NODE_RETURNED,
                message,
            );
        }
    }
}

/// The claim and volume read afresh, as [`claims::local_claim`] reads them.
struct Fetched {
    claim: Arc<PersistentVolumeClaim>,
    volume: Option<Arc<PersistentVolume>>,
}

impl Storage for Fetched {
    fn claim(&self, _namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        (self.claim.name_any() == name).then(|| self.claim.clone())
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volume.clone().filter(|v| v.name_any() == name)
    }
}

/// The events' reference to the StatefulSet that controls the pod.
fn set_reference(pod: &Pod) -> Option<(ObjectReference, String)> {
    let owner = decisions::controlling_set(pod)?;
    let reference = ObjectReference {
        api_version: Some(owner.api_version.clone()),
        kind: Some(owner.kind.clone()),
        name: Some(owner.name.clone()),
        namespace: pod.namespace(),
        uid: Some(owner.uid.clone()),
        ..ObjectReference::default()
    };
    Some((reference, owner.name.clone()))
}

/// What a replacement tells: the events' reason, the pod's message, and the set's.
type Announcement = (&'static str, String, Option<(ObjectReference, String)>);

/// Failing over the pods of one lost node.
pub struct Acting<'a> {
    writers: &'a Writers,
    loss: Loss,
    sightings: Sightings,
    config: &'a NodeLossConfig,
    /// When the last confirmation's Lease read was sent.
    confirmed_at: Option<Instant>,
}

impl<'a> Acting<'a> {
    pub fn new(
        writers: &'a Writers,
        loss: Loss,
        sightings: Sightings,
        config: &'a NodeLossConfig,
    ) -> Self {
        Self {
            writers,
            loss,
            sightings,
            config,
            confirmed_at: None,
        }
    }

    pub fn loss(&self) -> &Loss {
        &self.loss
    }

    /// Confirms with the API that the node is still lost: it still says it is fenced, and its
    /// Lease's renewTime is still the one this controller has watched for the deadline and the
    /// allowance (a cache can lag; the API cannot). Answers the Node as read.
    pub async fn confirm(&mut self) -> Option<Node> {
        self.confirmed_at = None;
        let name = self.loss.node.clone();
        let node = match self.writers.nodes().get_opt(&name).await {
            Ok(node) => node?,
            Err(error) => {
                tracing::debug!(%error, node = %name, "could not read the node");
                return None;
            }
        };
        let Fence::Deadline(deadline) = decisions::fence_of(&node) else {
            return None;
        };
        let leases: Api<Lease> = Api::namespaced(self.writers.client.clone(), LEASE_NAMESPACE);
        let sent = Instant::now();
        let renewed = match leases.get_opt(&name).await {
            Ok(lease) => lease.as_ref().and_then(renew_time),
            Err(error) => {
                tracing::debug!(%error, node = %name, "could not read the node's Lease");
                return None;
            }
        };
        let now = Instant::now();
        let seen = {
            let mut sightings = self.sightings.lock().unwrap_or_else(|p| p.into_inner());
            let seen = decisions::observe(sightings.get(&name), renewed, now);
            sightings.insert(name.clone(), seen.clone());
            seen
        };
        if seen.renewed != self.loss.renewed || !decisions::lost(&seen, deadline, self.config, now)
        {
            tracing::info!(node = %name, "the node renewed its Lease after all (or its deadline grew): nothing is failed over");
            return None;
        }
        self.loss.deadline = deadline;
        self.loss.silent_for = decisions::silent_for(&seen, now);
        self.confirmed_at = Some(sent);
        Some(node)
    }

    /// Whether the node is still confirmed lost, confirming again when the last confirmation
    /// is too old to act on.
    async fn still_lost(&mut self) -> bool {
        let fresh = self
            .confirmed_at
            .is_some_and(|at| at.elapsed() < CONFIRMATION_LIFETIME);
        fresh || self.confirm().await.is_some()
    }

    pub async fn carry_out(&mut self, pod: &Pod, failover: Failover, memory: &mut Memory) {
        let Some((set, set_name)) = set_reference(pod) else {
            return;
        };
        let pod_name = pod.name_any();
        match failover {
            Failover::Leave => {}
            Failover::DeletePod => {
                if !self.still_lost().await {
                    return;
                }
                let for_pod = texts::pod_deleted(&self.loss, &set_name);
                let for_set = texts::pod_deleted_for_set(&self.loss, &pod_name);
                self.announce(pod, texts::FAILOVER, for_pod, Some((set, for_set)));
                self.delete_pod(pod, memory).await;
            }
            Failover::ReplaceClaimsAndPod(local) => {
                let for_pod = texts::pod_and_claims_deleted(&self.loss, &set_name, &local);
                let for_set = texts::pod_and_claims_deleted_for_set(&self.loss, &pod_name, &local);
                let announced = (texts::FAILOVER, for_pod, Some((set, for_set)));
                // The pod goes only once its claims are going: were it made again first, it
                // would find its old claims and wait for the lost node again.
                if self
                    .replace_claims(pod, &local, &set_name, announced, memory)
                    .await
                {
                    self.delete_pod(pod, memory).await;
                }
            }
            Failover::ReplaceClaims(local) => {
                let for_pod = texts::pending_pod_claims_replaced(&self.loss, &set_name, &local);
                let announced = (texts::CLAIM_REPLACED, for_pod, None);
                self.replace_claims(pod, &local, &set_name, announced, memory)
                    .await;
            }
            Failover::Wait(local) => {
                let namespace = pod.namespace().unwrap_or_default();
                let for_pod = texts::pod_waits(&self.loss, &namespace, &set_name, &local);
                let for_set =
                    texts::pod_waits_for_set(&self.loss, &namespace, &set_name, &pod_name, &local);
                self.announce(pod, texts::WAITING, for_pod, Some((set, for_set)));
                memory
                    .warned
                    .insert(pod.uid().unwrap_or_default(), self.loss.node.clone());
            }
        }
    }

    /// Warning events on the pod and, when given, its StatefulSet.
    fn announce(
        &self,
        pod: &Pod,
        reason: &str,
        for_pod: String,
        for_set: Option<(ObjectReference, String)>,
    ) {
        let events = &self.writers.events;
        events.record(pod.object_ref(&()), "Warning", reason, for_pod);
        if let Some((set, message)) = for_set {
            events.record(set, "Warning", reason, message);
        }
    }

    /// Confirms the pod's claims afresh, announces their replacement as `announced` says
    /// (reason, the pod's message, the set's), and deletes them; whether all are gone or going.
    async fn replace_claims(
        &mut self,
        pod: &Pod,
        local: &[LocalClaim],
        set_name: &str,
        announced: Announcement,
        memory: &mut Memory,
    ) -> bool {
        let Some(fresh) = self.confirm_claims(pod, local).await else {
            return false;
        };
        if !self.still_lost().await {
            return false;
        }
        let (reason, for_pod, for_set) = announced;
        self.announce(pod, reason, for_pod, for_set);
        self.delete_claims(&fresh, set_name, memory).await
    }

    /// The `DisruptionTarget` condition, then a delete at once of exactly this pod.
    async fn delete_pod(&mut self, pod: &Pod, memory: &mut Memory) {
        let name = pod.name_any();
        let pods: Api<Pod> = Api::namespaced(
            self.writers.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        match crate::disruption::mark(&pods, pod, DISRUPTION_REASON, DISRUPTION_MESSAGE).await {
            Ok(Some(written)) => memory.wrote_pods = memory.wrote_pods.max(version_of(&written)),
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(%error, pod = %name, "could not add the DisruptionTarget condition")
            }
        }
        if !self.still_lost().await {
            return;
        }
        let uid = pod.uid().unwrap_or_default();
        match guarded::delete_now(&pods, &name, &uid).await {
            Ok(deleted) => {
                if let Deleted::Done(Some(answer)) = &deleted {
                    memory.wrote_pods = memory.wrote_pods.max(version_of(answer));
                }
                tracing::warn!(pod = %format!("{}/{name}", pod.namespace().unwrap_or_default()),
                    node = %self.loss.node, "deleted at once: its node is lost and fenced");
                memory.deleted.insert(uid);
            }
            Err(error) => tracing::warn!(%error, pod = %name, "could not delete the pod"),
        }
    }

    /// Reads the pod's StatefulSet, claims and volumes afresh: the set must still ask for
    /// `recreate-claim` (removing the annotation withdraws the consent) and each claim must
    /// still be bound to a volume pinned to the lost node. Answers the claims still there, or
    /// `None` when anything changed (the next pass decides again).
    async fn confirm_claims(
        &self,
        pod: &Pod,
        local: &[LocalClaim],
    ) -> Option<Vec<(LocalClaim, PersistentVolumeClaim)>> {
        let namespace = pod.namespace().unwrap_or_default();
        let owner = decisions::controlling_set(pod)?;
        let client = &self.writers.client;
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
        let set = sets.get_opt(&owner.name).await.ok()??;
        if set.uid().as_deref() != Some(owner.uid.as_str())
            || decisions::on_node_loss(Some(&set)) != OnNodeLoss::RecreateClaim
        {
            return None;
        }
        let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        let lost: HashMap<String, String> =
            [(self.loss.hostname.clone(), self.loss.node.clone())].into();
        let mut confirmed = Vec::new();
        for wanted in local {
            let Some(claim) = claims_api.get_opt(&wanted.claim).await.ok()? else {
                continue;
            };
            if claim.uid().as_deref() != Some(wanted.uid.as_str()) {
                // Replaced meanwhile: the new claim is no business of this failover's.
                continue;
            }
            let volume = volumes.get_opt(&wanted.volume).await.ok()?;
            let fetched = Fetched {
                claim: Arc::new(claim),
                volume: volume.map(Arc::new),
            };
            if claims::local_claim(&fetched.claim, &fetched, &lost).as_ref() != Some(wanted) {
                return None;
            }
            confirmed.push((wanted.clone(), PersistentVolumeClaim::clone(&fetched.claim)));
        }
        Some(confirmed)
    }

    /// Deletes each claim (exactly the one read), with an event on it; whether all are gone or
    /// going.
    async fn delete_claims(
        &mut self,
        claims: &[(LocalClaim, PersistentVolumeClaim)],
        set: &str,
        memory: &mut Memory,
    ) -> bool {
        for (local, claim) in claims {
            if claim.metadata.deletion_timestamp.is_some() {
                memory.replaced.insert(local.uid.clone());
                continue;
            }
            if !self.still_lost().await {
                return false;
            }
            self.writers.events.record(
                claim.object_ref(&()),
                "Warning",
                texts::CLAIM_REPLACED,
                texts::claim_replaced(&self.loss, local, set),
            );
            let api: Api<PersistentVolumeClaim> = Api::namespaced(
                self.writers.client.clone(),
                &claim.namespace().unwrap_or_default(),
            );
            match guarded::delete(&api, &local.claim, &local.uid).await {
                Ok(_) => {
                    tracing::warn!(claim = %local.claim, volume = %local.volume, node = %local.node,
                        "deleted a claim local to a lost node, as its StatefulSet asks");
                    memory.replaced.insert(local.uid.clone());
                }
                Err(error) => {
                    tracing::warn!(%error, claim = %local.claim, "could not delete the claim");
                    return false;
                }
            }
        }
        true
    }
}
