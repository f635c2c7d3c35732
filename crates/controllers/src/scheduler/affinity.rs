//! InterPodAffinity, as upstream's plugin: required pod affinity and anti-affinity of the pod,
//! the required anti-affinity of pods already placed, and the preferred terms' score, on any
//! topology key. Counts are taken once per decision from the snapshot's label index, per
//! (topology key, value), and each node is then judged by its own labels.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Affinity, Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use kube::ResourceExt;
use petset_api::selector::{LabelSelector, Requirement};
use serde_json::{Map, Value};

use super::filters::{Rejection, Verdict};
use super::snapshot::{NodeInfo, Placed, Snapshot, labels_of};

/// Upstream's `hardPodAffinityWeight`: how much an existing pod's required affinity to the
/// incoming pod counts in the score.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type Topology = (String, String);

/// One pod (anti-)affinity term, resolved against the namespace of the pod that states it.
#[derive(Debug, Clone)]
pub struct Term {
    namespaces: HashSet<String>,
    /// `None`: no namespace beyond `namespaces` (upstream's `labels.Nothing()`).
    namespace_selector: Option<LabelSelector>,
    /// `None`: the term selects no pod (a term without `labelSelector`).
    selector: Option<LabelSelector>,
    pub topology_key: String,
    pub weight: i64,
}

fn structured(selector: Option<&impl serde::Serialize>) -> Option<LabelSelector> {
    let value = serde_json::to_value(selector?).ok()?;
    LabelSelector::from_structured(&value).ok()
}

impl Term {
    fn new(owner_namespace: &str, term: &PodAffinityTerm, weight: i64) -> Self {
        let listed = term.namespaces.as_deref().unwrap_or_default();
        let namespace_selector = structured(term.namespace_selector.as_ref());
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            HashSet::from([owner_namespace.to_string()])
        } else {
            listed.iter().cloned().collect()
        };
        Self {
            namespaces,
            namespace_selector,
            selector: structured(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    fn in_namespace(&self, namespace: &str, snapshot: &Snapshot) -> bool {
        self.namespaces.contains(namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|selector| selector.matches(snapshot.namespaces.get(namespace)))
    }

    /// Upstream's `AffinityTerm.Matches`.
    pub fn matches(
        &self,
        namespace: &str,
        labels: &Map<String, Value>,
        snapshot: &Snapshot,
    ) -> bool {
        self.in_namespace(namespace, snapshot)
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(Some(labels)))
    }

    /// The placed pods the term selects, found through the label index.
    fn selected<'a>(&'a self, snapshot: &'a Snapshot) -> impl Iterator<Item = &'a Placed> + 'a {
        let mut namespaces: Vec<&str> = self.namespaces.iter().map(String::as_str).collect();
        if let Some(selector) = &self.namespace_selector {
            namespaces.extend(
                snapshot
                    .namespaces
                    .iter()
                    .filter(|(name, labels)| {
                        !self.namespaces.contains(*name) && selector.matches(Some(labels))
                    })
                    .map(|(name, _)| name.as_str()),
            );
        }
        let selector = self.selector.as_ref();
        namespaces.into_iter().flat_map(move |namespace| {
            let equalities = selector
                .into_iter()
                .flat_map(|s| s.requirements.iter())
                .filter_map(|r| match r {
                    Requirement::Equals(k, v) => Some((k.as_str(), v.as_str())),
                    Requirement::In(k, values) if values.len() == 1 => {
                        Some((k.as_str(), values[0].as_str()))
                    }
                    _ => None,
                });
            snapshot
                .candidates(namespace, equalities)
                .map(|(_, placed)| placed)
                .filter(move |placed| selector.is_some_and(|s| s.matches(Some(&placed.labels))))
        })
    }
}

/// A pod's own affinity terms, parsed once.
#[derive(Debug, Clone, Default)]
pub struct PodTerms {
    pub required_affinity: Vec<Term>,
    pub required_anti_affinity: Vec<Term>,
    pub preferred_affinity: Vec<Term>,
    pub preferred_anti_affinity: Vec<Term>,
}

impl PodTerms {
    pub fn of(namespace: &str, affinity: Option<&Affinity>) -> Self {
        let Some(affinity) = affinity else {
            return Self::default();
        };
        // Required terms weigh nothing of their own; preferred ones their weight.
        let required = |terms: Option<&Vec<PodAffinityTerm>>| resolve(namespace, terms, |t| (t, 0));
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| {
            resolve(namespace, terms, |t| {
                (&t.pod_affinity_term, i64::from(t.weight))
            })
        };
        let (together, apart) = (
            affinity.pod_affinity.as_ref(),
            affinity.pod_anti_affinity.as_ref(),
        );
        Self {
            required_affinity: required(together.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(apart.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(together.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(apart.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }
}

/// Resolves a list of (weighted) terms against the namespace of the pod stating them.
fn resolve<T>(
    namespace: &str,
    terms: Option<&Vec<T>>,
    term_of: impl Fn(&T) -> (&PodAffinityTerm, i64),
) -> Vec<Term> {
    terms
        .into_iter()
        .flatten()
        .map(|t| {
            let (term, weight) = term_of(t);
            Term::new(namespace, term, weight)
        })
        .collect()
}

fn pod_terms(pod: &Pod) -> PodTerms {
    PodTerms::of(
        &pod.namespace().unwrap_or_default(),
        pod.spec.as_ref().and_then(|s| s.affinity.as_ref()),
    )
}

fn topology_of(snapshot: &Snapshot, placed: &Placed, key: &str) -> Option<Topology> {
    let value = snapshot.nodes.get(&placed.node)?.labels.get(key)?;
    Some((key.to_string(), value.clone()))
}

/// The counts the filter judges nodes by (upstream's PreFilter state).
#[derive(Debug, Default)]
pub struct AffinityCheck {
    terms: PodTerms,
    /// Where pods matching all the pod's required affinity terms run.
    affinity: HashMap<Topology, i64>,
    /// Where pods matching one of its required anti-affinity terms run.
    anti_affinity: HashMap<Topology, i64>,
    /// Where pods run whose required anti-affinity selects this pod.
    existing_anti_affinity: HashMap<Topology, i64>,
    /// The first of a group that wants to be together goes anywhere.
    matches_own_affinity: bool,
}

impl AffinityCheck {
    pub fn new(pod: &Pod, snapshot: &Snapshot) -> Self {
        let namespace = pod.namespace().unwrap_or_default();
        let labels = labels_of(pod);
        let terms = pod_terms(pod);
        let mut check = Self {
            matches_own_affinity: terms
                .required_affinity
                .iter()
                .all(|t| t.matches(&namespace, &labels, snapshot)),
            ..Self::default()
        };
        if let Some((first, rest)) = terms.required_affinity.split_first() {
            let together = first.selected(snapshot).filter(|placed| {
                rest.iter()
                    .all(|t| t.matches(&placed.namespace, &placed.labels, snapshot))
            });
            for placed in together {
                for term in &terms.required_affinity {
                    if let Some(topology) = topology_of(snapshot, placed, &term.topology_key) {
                        *check.affinity.entry(topology).or_default() += 1;
                    }
                }
            }
        }
        for term in &terms.required_anti_affinity {
            for placed in term.selected(snapshot) {
                if let Some(topology) = topology_of(snapshot, placed, &term.topology_key) {
                    *check.anti_affinity.entry(topology).or_default() += 1;
                }
            }
        }
        for key in &snapshot.with_affinity {
            let Some(placed) = snapshot.placed.get(key) else {
                continue;
            };
            let Some(theirs) = placed.affinity.as_ref() else {
                continue;
            };
            for term in &theirs.required_anti_affinity {
                if term.matches(&namespace, &labels, snapshot)
                    && let Some(topology) = topology_of(snapshot, placed, &term.topology_key)
                {
                    *check.existing_anti_affinity.entry(topology).or_default() += 1;
                }
            }
        }
        check.terms = terms;
        check
    }

    /// The filter, in upstream's order of checks: affinity, anti-affinity, then the placed
    /// pods' anti-affinity.
    pub fn filter(&self, node: &NodeInfo) -> Verdict {
        let present = |counts: &HashMap<Topology, i64>, key: &str| {
            node.labels.get(key).is_some_and(|value| {
                counts
                    .get(&(key.to_string(), value.clone()))
                    .is_some_and(|c| *c > 0)
            })
        };
        let required = &self.terms.required_affinity;
        let labelled = required
            .iter()
            .all(|t| node.labels.contains_key(&t.topology_key));
        let together = required
            .iter()
            .all(|t| present(&self.affinity, &t.topology_key));
        let first_of_group = self.affinity.is_empty() && self.matches_own_affinity;
        if !labelled || !(together || first_of_group) {
            return Err(Rejection::unresolvable(
                "node(s) didn't match pod affinity rules",
            ));
        }
        if self
            .terms
            .required_anti_affinity
            .iter()
            .any(|t| present(&self.anti_affinity, &t.topology_key))
        {
            return Err(Rejection::resolvable(vec![
                "node(s) didn't match pod anti-affinity rules".into(),
            ]));
        }
        let existing = self
            .existing_anti_affinity
            .iter()
            .any(|((key, value), count)| *count > 0 && node.labels.get(key) == Some(value));
        if existing {
            return Err(Rejection::resolvable(vec![
                "node(s) didn't satisfy existing pods anti-affinity rules".into(),
            ]));
        }
        Ok(())
    }
}

/// The InterPodAffinity score's raw values per (topology key, value): the pod's preferred
/// terms over the placed pods, and the placed pods' terms over the pod.
pub fn preference_weights(pod: &Pod, snapshot: &Snapshot) -> HashMap<Topology, i64> {
    let namespace = pod.namespace().unwrap_or_default();
    let labels = labels_of(pod);
    let terms = pod_terms(pod);
    let mut weights: HashMap<Topology, i64> = HashMap::new();
    let mut add = |topology: Option<Topology>, weight: i64| {
        if let Some(topology) = topology {
            *weights.entry(topology).or_default() += weight;
        }
    };
    for (preferred, sign) in [
        (&terms.preferred_affinity, 1),
        (&terms.preferred_anti_affinity, -1),
    ] {
        for term in preferred {
            for placed in term.selected(snapshot) {
                add(
                    topology_of(snapshot, placed, &term.topology_key),
                    sign * term.weight,
                );
            }
        }
    }
    for key in &snapshot.with_affinity {
        let Some((placed, theirs)) = snapshot
            .placed
            .get(key)
            .and_then(|p| Some((p, p.affinity.as_ref()?)))
        else {
            continue;
        };
        let weighted = [
            (&theirs.required_affinity, HARD_POD_AFFINITY_WEIGHT, false),
            (&theirs.preferred_affinity, 1, true),
            (&theirs.preferred_anti_affinity, -1, true),
        ];
        for (terms, factor, by_weight) in weighted {
            for term in terms
                .iter()
                .filter(|t| t.matches(&namespace, &labels, snapshot))
            {
                let weight = if by_weight {
                    factor * term.weight
                } else {
                    factor
                };
                add(topology_of(snapshot, placed, &term.topology_key), weight);
            }
        }
    }
    weights
}

/// The parsed terms a placed pod keeps, when it has any.
pub fn placed_terms(pod: &Pod) -> Option<Arc<PodTerms>> {
    Some(Arc::new(pod_terms(pod))).filter(|t| !t.is_empty())
}
