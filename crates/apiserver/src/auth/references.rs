//! Which secrets and configmaps a pod uses: the edges of upstream's node authorizer graph
//! (`node <- pod <- secret`, `node <- pod <- configmap`) for the places a pod can name them
//! (upstream's `VisitPodSecretNames` / `VisitPodConfigmapNames`, for the volume kinds petset
//! mounts).

use serde_json::Value;

/// A kind of object a pod refers to by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referenced {
    Secret,
    ConfigMap,
}

impl Referenced {
    /// The field of an env source (`valueFrom.<key ref>`, `envFrom[].<ref>`) and of a
    /// projected source that names this kind.
    fn fields(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Secret => ("secretKeyRef", "secretRef", "secret"),
            Self::ConfigMap => ("configMapKeyRef", "configMapRef", "configMap"),
        }
    }
}

/// Whether `pod` names the `kind` object `name` anywhere it could use it.
pub fn pod_references(pod: &Value, kind: Referenced, name: &str) -> bool {
    let named = |value: Option<&Value>| value.and_then(Value::as_str) == Some(name);
    let (key_ref, env_from_ref, projected) = kind.fields();
    let spec = &pod["spec"];
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|list| spec[*list].as_array())
        .flatten();
    for container in containers {
        let env = container["env"].as_array().into_iter().flatten();
        if env
            .into_iter()
            .any(|variable| named(variable.pointer(&format!("/valueFrom/{key_ref}/name"))))
        {
            return true;
        }
        let env_from = container["envFrom"].as_array().into_iter().flatten();
        if env_from
            .into_iter()
            .any(|source| named(source.pointer(&format!("/{env_from_ref}/name"))))
        {
            return true;
        }
    }
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    for volume in volumes {
        let direct = match kind {
            Referenced::Secret => volume.pointer("/secret/secretName"),
            Referenced::ConfigMap => volume.pointer("/configMap/name"),
        };
        let sources = volume
            .pointer("/projected/sources")
            .and_then(Value::as_array);
        if named(direct)
            || sources
                .into_iter()
                .flatten()
                .any(|source| named(source.pointer(&format!("/{projected}/name"))))
        {
            return true;
        }
    }
    kind == Referenced::Secret
        && spec["imagePullSecrets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|reference| named(reference.get("name")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_place_a_pod_names_a_secret_or_configmap_counts() {
        let pod = json!({"spec": {
            "imagePullSecrets": [{"name": "registry"}],
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "init-settings"}}]}],
            "containers": [{"name": "app",
                "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "modes", "key": "mode"}}}],
                "envFrom": [{"secretRef": {"name": "env-secret"}}]}],
            "volumes": [
                {"name": "certs", "secret": {"secretName": "tls"}},
                {"name": "config", "configMap": {"name": "settings"}},
                {"name": "all", "projected": {"sources": [{"secret": {"name": "projected-secret"}},
                                                           {"configMap": {"name": "kube-root-ca.crt"}}]}},
            ],
        }});
        for secret in ["registry", "db", "env-secret", "tls", "projected-secret"] {
            assert!(pod_references(&pod, Referenced::Secret, secret), "{secret}");
        }
        for map in ["init-settings", "modes", "settings", "kube-root-ca.crt"] {
            assert!(pod_references(&pod, Referenced::ConfigMap, map), "{map}");
        }
        assert!(!pod_references(&pod, Referenced::Secret, "settings"));
        assert!(!pod_references(&pod, Referenced::ConfigMap, "tls"));
        assert!(!pod_references(&pod, Referenced::ConfigMap, "registry"));
        assert!(!pod_references(&json!({}), Referenced::Secret, "db"));
    }
}
