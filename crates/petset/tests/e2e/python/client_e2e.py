#!/usr/bin/env python3
"""petset driven by the official Kubernetes Python client, as its users write it.

Run by crates/petset/tests/e2e/python_client.rs against a fresh `petset up` on the simulated
node, with KUBECONFIG set to that cluster's admin kubeconfig and TMPDIR to a directory the test
removes (the dynamic client caches discovery there).

    client_e2e.py GROUP|PART...    GROUP is `core` or `workloads`; PART a name from PARTS

Each part is a function of its own. A part whose kinds the cluster does not serve is reported
as NOT SERVED with the kind it needs; any wrong answer fails the part with what was expected
and what came back. Exit status: 0 when every part passed, 1 otherwise.
"""

import concurrent.futures
import json
import os
import sys
import threading
import time
import traceback

import yaml
from kubernetes import client, config, dynamic, utils, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.stream import stream

HERE = os.path.dirname(os.path.abspath(__file__))
NS = "py-e2e"
# Generous deadlines: waits end as soon as their condition holds.
DEADLINE = 90


class Failure(Exception):
    """A wrong answer from the API server."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def wait_for(what, condition, timeout=DEADLINE):
    """Polls `condition` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except ApiException as e:
            last = f"ApiException {e.status}: {e.body}"
            if e.status not in (404, 409):
                raise
        else:
            if last:
                return last
        time.sleep(0.2)
    raise Failure(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def status_body(e, code, reason):
    """Checks an ApiException carries upstream's Status object; returns it as a dict."""
    eq(e.status, code, f"HTTP status of {e.reason}")
    try:
        body = json.loads(e.body)
    except (TypeError, ValueError):
        raise Failure(f"the {code} answer is not a JSON Status: {e.body!r}")
    eq(body.get("kind"), "Status", "kind of the error body")
    eq(body.get("apiVersion"), "v1", "apiVersion of the error body")
    eq(body.get("status"), "Failure", "status of the error body")
    eq(body.get("reason"), reason, "reason of the error body")
    eq(body.get("code"), code, "code of the error body")
    return body


def refused(call, *args, code, reason, **kwargs):
    """Calls an API function that must fail; returns its Status body."""
    try:
        answer = call(*args, **kwargs)
    except ApiException as e:
        return status_body(e, code, reason)
    raise Failure(f"{call.__name__} succeeded (expected {code} {reason}): {answer}")


def gone(read, *args, **kwargs):
    """True once `read` answers 404."""
    try:
        read(*args, **kwargs)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def meta(name, **labels):
    return {"name": name, "labels": labels} if labels else {"name": name}


def pod_manifest(name, **labels):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, **labels),
        "spec": {
            "containers": [
                {
                    "image": "busybox",
                    "name": "sleep",
                    "args": ["/bin/sh", "-c", "while true; do date; sleep 5; done"],
                }
            ]
        },
    }


def pod_template(labels, image="nginx:1.15.4", name="nginx"):
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "containers": [
                {"name": name, "image": image, "ports": [{"containerPort": 80}]}
            ]
        },
    }


def ready_pods(core, namespace, selector):
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def no_pods(core, namespace, selector):
    return not core.list_namespaced_pod(namespace, label_selector=selector).items


class Context:
    def __init__(self):
        config.load_kube_config()
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self._served = {}

    def served(self, group_version, kind):
        """Whether discovery lists `kind` in `group_version`."""
        if group_version not in self._served:
            path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            try:
                data = self.api.call_api(
                    path, "GET", response_type="object", _return_http_data_only=True,
                    auth_settings=["BearerToken"],
                )
                self._served[group_version] = {r["kind"] for r in data.get("resources", [])}
            except ApiException as e:
                if e.status != 404:
                    raise
                self._served[group_version] = set()
        return kind in self._served[group_version]


PARTS = {}


def part(group, *needs):
    """Registers a part; `needs` are (groupVersion, kind, who adds it) it cannot run without."""

    def register(function):
        PARTS[function.__name__] = (group, needs, function)
        return function

    return register


# ---------------------------------------------------------------------------------------------
# Core: the kinds petset served before issue 16.


@part("core")
def version_and_nodes(ctx):
    version = client.VersionApi(ctx.api).get_code()
    check(version.git_version.startswith("v1.33"), f"server version {version.git_version}")
    eq(version.major, "1", "version major")
    nodes = ctx.core.list_node().items
    check(nodes, "no node is listed")
    for item in nodes:
        node = ctx.core.read_node(name=item.metadata.name)
        check(isinstance(node.metadata.labels, dict) and node.metadata.labels, "node labels")
        eq(node.metadata.labels.get("kubernetes.io/hostname"), node.metadata.name, "hostname label")
        ready = [c.status for c in node.status.conditions if c.type == "Ready"]
        eq(ready, ["True"], "the node's Ready condition")
        for resource in ("cpu", "memory", "pods"):
            for listing in (node.status.capacity, node.status.allocatable):
                check(utils.parse_quantity(listing[resource]) > 0, f"{resource}: {listing}")
    groups = client.ApisApi(ctx.api).get_api_versions()
    names = {g.name for g in groups.groups}
    for group in ("apps", "rbac.authorization.k8s.io", "policy", "coordination.k8s.io"):
        check(group in names, f"API group {group} missing from /apis: {sorted(names)}")
    core_versions = client.CoreApi(ctx.api).get_api_versions()
    eq(core_versions.versions, ["v1"], "/api versions")


@part("core")
def namespaces(ctx):
    name = "py-ns"
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"team": "py"}))
    created = ctx.core.create_namespace(body=body)
    eq(created.metadata.name, name, "created namespace")
    eq(created.status.phase, "Active", "namespace phase")
    check(created.metadata.uid and created.metadata.resource_version, "uid and resourceVersion")
    again = refused(ctx.core.create_namespace, body=body, code=409, reason="AlreadyExists")
    eq(again.get("message"), f'namespaces "{name}" already exists', "AlreadyExists message")
    eq(again.get("details"), {"name": name, "kind": "namespaces"}, "AlreadyExists details")
    listed = ctx.core.list_namespace(label_selector="team=py").items
    eq([n.metadata.name for n in listed], [name], "namespaces labelled team=py")
    patched = ctx.core.patch_namespace(name, {"metadata": {"labels": {"tier": "test"}}})
    eq(patched.metadata.labels, {"team": "py", "tier": "test", "kubernetes.io/metadata.name": name},
       "labels after a merge patch")
    read = ctx.core.read_namespace(name=name)
    eq(read.metadata.labels.get("tier"), "test", "read namespace label")
    wait_for("the default ServiceAccount in the new namespace",
             lambda: ctx.core.read_namespaced_service_account("default", name))
    ctx.core.create_namespaced_config_map(name, {"metadata": {"name": "inside"}, "data": {"a": "b"}})
    deleted = ctx.core.delete_namespace(name=name, body={})
    # The API answers a Namespace being finalized (status Terminating), as upstream does.
    check(deleted is not None, "delete_namespace answered nothing")
    wait_for("the namespace to be gone", lambda: gone(ctx.core.read_namespace, name))
    missing = refused(ctx.core.read_namespace, name, code=404, reason="NotFound")
    eq(missing.get("message"), f'namespaces "{name}" not found', "NotFound message")


@part("core")
def pods(ctx):
    name = "busybox-test"
    core = ctx.core
    resp = core.create_namespaced_pod(body=pod_manifest(name, app="py"), namespace=NS)
    eq(resp.metadata.name, name, "created pod name")
    eq(resp.metadata.namespace, NS, "created pod namespace")
    check(resp.status.phase, "a created pod has a phase")
    eq(resp.spec.service_account_name, "default", "pod serviceAccountName default")
    eq(resp.spec.restart_policy, "Always", "pod restartPolicy default")
    eq(resp.spec.containers[0].image_pull_policy, "Always", "imagePullPolicy of an untagged image")
    eq(resp.spec.containers[0].termination_message_path, "/dev/termination-log",
       "terminationMessagePath default")

    running = wait_for("the pod to run", lambda: (p := core.read_namespaced_pod(name, NS))
                       .status.phase == "Running" and p)
    check(running.spec.node_name, "a running pod has a node")
    check(running.status.pod_ip, "a running pod has an IP")
    statuses = running.status.container_statuses or []
    eq([s.name for s in statuses], ["sleep"], "container statuses")
    check(statuses[0].state.running is not None, f"container state {statuses[0].state}")
    status = core.read_namespaced_pod_status(name, NS)
    eq(status.status.phase, "Running", "read_namespaced_pod_status phase")

    core.create_namespaced_pod(body=pod_manifest("other", app="py-other"), namespace=NS)
    by_label = core.list_namespaced_pod(NS, label_selector="app=py").items
    eq([p.metadata.name for p in by_label], [name], "pods with app=py")
    by_set = core.list_namespaced_pod(NS, label_selector="app in (py, py-other)").items
    eq(sorted(p.metadata.name for p in by_set), ["busybox-test", "other"], "pods with app in (…)")
    by_field = core.list_namespaced_pod(NS, field_selector=f"metadata.name={name}").items
    eq([p.metadata.name for p in by_field], [name], "pods by field selector")
    running_field = core.list_namespaced_pod(NS, field_selector="status.phase=Running",
                                             label_selector="app=py").items
    eq(len(running_field), 1, "pods with status.phase=Running")
    everywhere = core.list_pod_for_all_namespaces(label_selector="app=py")
    eq(len(everywhere.items), 1, "list_pod_for_all_namespaces")
    check(everywhere.metadata.resource_version, "a list has a resourceVersion")
    first = core.list_namespaced_pod(NS, limit=1)
    eq(len(first.items), 1, "a list with limit=1")
    check(first.metadata._continue, "a limited list has a continue token")
    rest = core.list_namespaced_pod(NS, limit=1, _continue=first.metadata._continue)
    eq(len(rest.items), 1, "the list's second page")
    check(rest.items[0].metadata.name != first.items[0].metadata.name, "pages repeat a pod")

    patched = core.patch_namespaced_pod(name, NS, {"metadata": {"labels": {"stage": "patched"}}})
    eq(patched.metadata.labels, {"app": "py", "stage": "patched"}, "labels after a patch")
    json_patched = core.patch_namespaced_pod(
        name, NS, [{"op": "add", "path": "/metadata/annotations", "value": {"a": "1"}}])
    eq(json_patched.metadata.annotations, {"a": "1"}, "annotations after a JSON patch")

    current = core.read_namespaced_pod(name, NS)
    current.metadata.annotations["replaced"] = "yes"
    replaced = core.replace_namespaced_pod(name, NS, current)
    eq(replaced.metadata.annotations.get("replaced"), "yes", "annotation after a replace")
    check(replaced.metadata.resource_version != current.metadata.resource_version,
          "a replace moves the resourceVersion")
    stale = refused(core.replace_namespaced_pod, name, NS, current, code=409, reason="Conflict")
    check("the object has been modified" in stale.get("message", ""), f"Conflict message {stale}")
    changed = core.read_namespaced_pod(name, NS)
    changed.spec.containers[0].name = "renamed"
    immutable = refused(core.replace_namespaced_pod, name, NS, changed, code=422, reason="Invalid")
    check("pod updates may not change fields" in immutable.get("message", ""), f"{immutable}")

    bad = refused(core.create_namespaced_pod, NS, pod_manifest("Bad_Name"), code=422,
                  reason="Invalid")
    check("Bad_Name" in bad.get("message", ""), f"Invalid message names the pod: {bad}")
    causes = bad.get("details", {}).get("causes") or []
    check(any(c.get("field") == "metadata.name" for c in causes), f"causes {causes}")

    # A simulated node keeps no container logs and runs no processes: the API says so clearly.
    log_error = refused_any(core.read_namespaced_pod_log, name, NS)
    check("simulated" in log_error, f"read_namespaced_pod_log error: {log_error}")
    try:
        answer = stream(core.connect_get_namespaced_pod_exec, name, NS, command=["date"],
                        stderr=True, stdin=False, stdout=True, tty=False)
        raise Failure(f"exec on a simulated node answered {answer!r}")
    except ApiException as e:
        check("503" in str(e.reason) and "simulated node" in str(e.body or e.reason),
              f"exec error: {e.reason} {e.body}")

    events = wait_for("the pod's Scheduled event", lambda: [
        e for e in core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
        if e.reason == "Scheduled"])
    eq(events[0].involved_object.kind, "Pod", "event involvedObject kind")
    check(events[0].message.startswith(f"Successfully assigned {NS}/{name} to "), events[0].message)

    deleted = core.delete_namespaced_pod(name, NS, body=client.V1DeleteOptions(grace_period_seconds=0))
    eq(deleted.metadata.name, name, "delete_namespaced_pod answers the pod")
    core.delete_namespaced_pod("other", NS, body={})
    wait_for("the pods to be gone", lambda: gone(core.read_namespaced_pod, name, NS)
             and gone(core.read_namespaced_pod, "other", NS))
    missing = refused(core.read_namespaced_pod, name, NS, code=404, reason="NotFound")
    eq(missing.get("message"), f'pods "{name}" not found', "NotFound message")
    eq(missing.get("details"), {"name": name, "kind": "pods"}, "NotFound details")


def refused_any(call, *args, **kwargs):
    """Calls an API function that must fail; returns its status and message as text."""
    try:
        answer = call(*args, **kwargs)
    except ApiException as e:
        try:
            message = json.loads(e.body).get("message", "")
        except (TypeError, ValueError):
            message = e.body
        return f"{e.status} {message}"
    raise Failure(f"{call.__name__} succeeded: {answer!r}")


@part("core")
def services(ctx):
    name = "frontend"
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"labels": {"name": name}, "name": name},
        "spec": {
            "ports": [{"name": "port", "port": 80, "protocol": "TCP", "targetPort": 80}],
            "selector": {"name": name},
        },
    }
    resp = ctx.core.create_namespaced_service(body=manifest, namespace=NS)
    eq(resp.metadata.name, name, "created service")
    check(resp.status, "a service has a status")
    check(resp.spec.cluster_ip, "a ClusterIP service has an address")
    eq(resp.spec.type, "ClusterIP", "service type default")
    eq(resp.spec.session_affinity, "None", "sessionAffinity default")
    eq(resp.spec.ip_families, ["IPv4"], "ipFamilies")
    resp = ctx.core.read_namespaced_service(name=name, namespace=NS)
    eq(resp.metadata.name, name, "read service")
    manifest["spec"]["ports"] = [{"name": "new", "port": 8080, "protocol": "TCP", "targetPort": 8080}]
    # A dict body is sent as a strategic merge patch: ports merge by their port number.
    resp = ctx.core.patch_namespaced_service(body=manifest, name=name, namespace=NS)
    eq(sorted(p.port for p in resp.spec.ports), [80, 8080], "ports after a strategic merge patch")
    check(resp.status, "a patched service has a status")
    services = ctx.core.list_service_for_all_namespaces(field_selector="metadata.name=kubernetes")
    eq([(s.metadata.namespace, s.metadata.name) for s in services.items], [("default", "kubernetes")],
       "the kubernetes service")
    endpoints = wait_for("the service's Endpoints", lambda: ctx.core.read_namespaced_endpoints(name, NS))
    eq(endpoints.metadata.name, name, "endpoints name")
    ctx.core.delete_namespaced_service(name=name, body={}, namespace=NS)
    wait_for("the service to be gone", lambda: gone(ctx.core.read_namespaced_service, name, NS))


@part("core")
def configmaps(ctx):
    core = ctx.core
    name = "test-configmap"
    body = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"e2e-tests": "true"}},
        "data": {
            "config.json": '{"command":"/usr/bin/mysqld_safe"}',
            "frontend.cnf": "[mysqld]\nbind-address = 10.0.0.3\nport = 3306\n",
        },
    }
    resp = core.create_namespaced_config_map(body=body, namespace=NS)
    eq(resp.metadata.name, name, "created configmap")
    resp = core.read_namespaced_config_map(name=name, namespace=NS)
    eq(resp.data["frontend.cnf"], body["data"]["frontend.cnf"], "configmap data")

    resp = core.patch_namespaced_config_map(
        name=name, namespace=NS,
        body=[{"op": "replace", "path": "/data", "value": {"new_value": "json_patch_name"}}])
    eq(resp.data, {"new_value": "json_patch_name"}, "data after a JSON patch")
    resp = core.patch_namespaced_config_map(
        name=name, namespace=NS, body={"data": {"new_value": "merge_patch_name"}})
    eq(resp.data, {"new_value": "merge_patch_name"}, "data after a strategic merge patch")
    # A JSON merge patch: the typed API picks its content type by the body, so users call
    # call_api with the header for this one.
    resp = ctx.api.call_api(
        f"/api/v1/namespaces/{NS}/configmaps/{name}", "PATCH",
        header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
        body={"data": {"other": "x", "new_value": None}}, response_type="V1ConfigMap",
        auth_settings=["BearerToken"], _return_http_data_only=True)
    eq(resp.data, {"other": "x"}, "data after a JSON merge patch removing a key")
    bad = refused(core.patch_namespaced_config_map, name=name, namespace=NS,
                  body=[{"op": "test", "path": "/data/other", "value": "y"}],
                  code=422, reason="Invalid")
    check(bad.get("message"), f"a failed JSON patch test says why: {bad}")

    resp.data = {"replaced": "1"}
    replaced = core.replace_namespaced_config_map(name, NS, resp)
    eq(replaced.data, {"replaced": "1"}, "data after a replace")

    for index in range(3):
        core.create_namespaced_config_map(NS, {
            "metadata": {"name": f"many-{index}", "labels": {"e2e-tests": "true", "batch": "many"}},
            "data": {"index": str(index)}})
    listed = core.list_namespaced_config_map(NS, label_selector="e2e-tests=true")
    eq(sorted(c.metadata.name for c in listed.items),
       ["many-0", "many-1", "many-2", name], "configmaps labelled e2e-tests=true")
    eq(listed.kind, "ConfigMapList", "list kind")
    eq(listed.api_version, "v1", "list apiVersion")
    everywhere = core.list_config_map_for_all_namespaces(label_selector="batch=many")
    eq(len(everywhere.items), 3, "configmaps in all namespaces")

    status = core.delete_collection_namespaced_config_map(NS, label_selector="batch=many")
    check(status is not None, "delete_collection answered nothing")
    left = core.list_namespaced_config_map(NS, label_selector="e2e-tests=true")
    eq([c.metadata.name for c in left.items], [name], "configmaps left after delete_collection")

    answer = core.delete_namespaced_config_map(name=name, body={}, namespace=NS)
    eq(answer.status, "Success", "delete of a configmap answers a Success Status")
    eq(answer.details.name, name, "Status details name")
    eq(answer.details.kind, "configmaps", "Status details kind")
    resp = core.list_namespaced_config_map(NS, label_selector="e2e-tests=true")
    eq(resp.items, [], "configmaps left")
    refused(core.delete_namespaced_config_map, name, NS, code=404, reason="NotFound")

    dry = core.create_namespaced_config_map(NS, {"metadata": {"name": "dry"}}, dry_run="All")
    eq(dry.metadata.name, "dry", "dry-run create answers the object")
    check(gone(core.read_namespaced_config_map, "dry", NS), "a dry-run create stored the object")


@part("core")
def secrets(ctx):
    core = ctx.core
    created = core.create_namespaced_secret(NS, client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds", labels={"app": "py"}),
        string_data={"user": "admin", "password": "s3cret"}))
    # stringData is written into data (base64) and not kept, as upstream's conversion does.
    eq(created.data, {"user": "YWRtaW4=", "password": "czNjcmV0"}, "data of a Secret made from stringData")
    eq(created.string_data, None, "stringData kept")
    eq(created.type, "Opaque", "Secret type default")
    patched = core.patch_namespaced_secret("creds", NS, {"stringData": {"password": "new"}})
    eq(patched.data, {"user": "YWRtaW4=", "password": "bmV3"}, "data after patching stringData")
    read = core.read_namespaced_secret("creds", NS)
    eq(read.data, patched.data, "read secret data")
    typed = core.list_namespaced_secret(NS, field_selector="type=Opaque", label_selector="app=py")
    eq([x.metadata.name for x in typed.items], ["creds"], "secrets by type")
    bad = refused(core.create_namespaced_secret, NS, {"metadata": {"name": "bad"}, "data": {"k": "not base64!"}},
                  code=400, reason="BadRequest")
    check(bad.get("message"), f"a bad base64 value says why: {bad}")
    core.delete_namespaced_secret("creds", NS)

    # A token for the namespace's default ServiceAccount, and the API's review of it.
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=["https://kubernetes.default.svc.cluster.local"], expiration_seconds=600))
    token = core.create_namespaced_service_account_token("default", NS, request)
    check(token.status.token.count(".") == 2, "a TokenRequest answers a JWT")
    check(token.status.expiration_timestamp is not None, "the token's expiry")
    review = client.AuthenticationV1Api(ctx.api).create_token_review(client.V1TokenReview(
        spec=client.V1TokenReviewSpec(token=token.status.token)))
    check(review.status.authenticated, f"TokenReview {review.status}")
    eq(review.status.user.username, f"system:serviceaccount:{NS}:default", "reviewed username")


def config_map_with_value(name, value, **labels):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(name, **labels),
        "data": {"key": value, "config": "dummy"},
    }


@part("core")
def watch_configmaps(ctx):
    """Upstream's watch e2e: events since a list's resourceVersion, in order."""
    core = ctx.core
    labels = {"watched": "yes"}
    core.create_namespaced_config_map(NS, config_map_with_value("configmap-a", "a", **labels))
    rv = core.list_namespaced_config_map(NS, label_selector="watched=yes").metadata.resource_version
    configmap_b = config_map_with_value("configmap-b", "b", **labels)
    core.create_namespaced_config_map(NS, configmap_b)
    configmap_b["data"]["config"] = "{}"
    core.patch_namespaced_config_map("configmap-b", NS, configmap_b)
    core.delete_collection_namespaced_config_map(NS, label_selector="watched=yes")

    w = watch.Watch()
    expect = ["ADDED", "MODIFIED", "DELETED", "DELETED"]
    seen = []
    started = time.monotonic()
    for event in w.stream(core.list_namespaced_config_map, namespace=NS,
                          label_selector="watched=yes", resource_version=rv, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        check(isinstance(event["object"], client.V1ConfigMap), f"event object {event['object']!r}")
        eq(event["raw_object"]["kind"], "ConfigMap", "raw event object kind")
    elapsed = time.monotonic() - started
    eq([t for t, _ in seen], expect, f"event types {seen}")
    eq([n for _, n in seen[:2]], ["configmap-b", "configmap-b"], "names of the first events")
    eq(sorted(n for _, n in seen[2:]), ["configmap-a", "configmap-b"], "names deleted")
    check(elapsed >= 4, f"the watch ended after {elapsed:.1f}s, before its timeoutSeconds=5")
    check(w.resource_version and int(w.resource_version) > int(rv),
          f"Watch kept resourceVersion {w.resource_version} after {rv}")

    # Resuming from the watch's last resourceVersion sees only what came after it.
    core.create_namespaced_config_map(NS, config_map_with_value("configmap-c", "c", **labels))
    resumed = [
        (e["type"], e["object"].metadata.name)
        for e in w.stream(core.list_namespaced_config_map, namespace=NS, label_selector="watched=yes",
                          resource_version=w.resource_version, timeout_seconds=2)
    ]
    eq(resumed, [("ADDED", "configmap-c")], "events after resuming")
    core.delete_namespaced_config_map("configmap-c", NS)

    # A watch of one object by name (field selector), as kubectl wait and the dynamic client do.
    core.create_namespaced_config_map(NS, config_map_with_value("configmap-d", "d"))
    rv = core.read_namespaced_config_map("configmap-d", NS).metadata.resource_version
    core.patch_namespaced_config_map("configmap-d", NS, {"data": {"key": "d2"}})
    core.create_namespaced_config_map(NS, config_map_with_value("configmap-e", "e"))
    one = [
        (e["type"], e["object"].data["key"])
        for e in watch.Watch().stream(core.list_namespaced_config_map, NS, resource_version=rv,
                                      field_selector="metadata.name=configmap-d", timeout_seconds=2)
    ]
    eq(one, [("MODIFIED", "d2")], "events of one configmap by field selector")

    # Without a resourceVersion a watch starts with ADDED for what exists.
    initial = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(core.list_namespaced_config_map, NS,
                                      field_selector="metadata.name=configmap-e", timeout_seconds=1)
    ]
    eq(initial, [("ADDED", "configmap-e")], "a watch from now starts with the current objects")
    for n in ("configmap-d", "configmap-e"):
        core.delete_namespaced_config_map(n, NS)

    # Bookmarks, when asked for, carry a resourceVersion and no error.
    for event in watch.Watch().stream(core.list_namespaced_config_map, NS, allow_watch_bookmarks=True,
                                      resource_version=rv, timeout_seconds=2):
        if event["type"] == "BOOKMARK":
            check(event["raw_object"]["metadata"].get("resourceVersion"), f"bookmark {event}")


@part("core")
def watch_pods(ctx):
    """A pod's life seen by a watch running beside the writer, stopped with Watch.stop()."""
    core = ctx.core
    name = "watched-pod"
    w = watch.Watch()
    events = []
    ready = threading.Event()
    errors = []

    def follow():
        try:
            for event in w.stream(core.list_namespaced_pod, NS, label_selector="watch=pods",
                                  timeout_seconds=DEADLINE):
                pod = event["object"]
                events.append((event["type"], pod.status.phase, pod.metadata.deletion_timestamp))
                ready.set()
                if event["type"] == "DELETED":
                    w.stop()
        except Exception as e:  # reported by the main thread
            errors.append(e)
            ready.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    time.sleep(0.5)
    core.create_namespaced_pod(NS, pod_manifest(name, watch="pods"))
    check(ready.wait(DEADLINE), "the watch saw no event")
    wait_for("the watch to see the pod run", lambda: any(p == "Running" for _, p, _ in events) or errors)
    core.delete_namespaced_pod(name, NS)
    thread.join(DEADLINE)
    check(not errors, f"the pod watch failed: {errors}")
    check(not thread.is_alive(), f"the watch did not see the pod deleted: {events}")
    types = [t for t, _, _ in events]
    eq(types[0], "ADDED", f"first event {events}")
    eq(types[-1], "DELETED", f"last event {events}")
    check(set(types[1:-1]) == {"MODIFIED"}, f"events between ADDED and DELETED: {events}")
    check(any(t == "MODIFIED" and d is not None for t, _, d in events),
          f"no MODIFIED event with a deletionTimestamp (graceful deletion): {events}")


class Informer:
    """What users write before reaching for a library: list, then watch from the list's
    resourceVersion, apply ADDED/MODIFIED/DELETED to a cache, resume after each watch ends,
    and relist on 410 Gone."""

    def __init__(self, list_function, namespace, timeout_seconds=2, **selectors):
        self.list_function = list_function
        self.namespace = namespace
        self.selectors = selectors
        self.timeout_seconds = timeout_seconds
        self.cache = {}
        self.resource_version = None
        self.lists = 0
        self.expired = 0
        self.events = []

    def relist(self):
        answer = self.list_function(self.namespace, **self.selectors)
        self.cache = {o.metadata.name: o for o in answer.items}
        self.resource_version = answer.metadata.resource_version
        check(self.resource_version, "a list answered no resourceVersion")
        self.lists += 1

    def run_once(self):
        """One watch until it times out (or a 410); returns after it ends."""
        if self.resource_version is None:
            self.relist()
        w = watch.Watch()
        try:
            for event in w.stream(self.list_function, self.namespace, resource_version=self.resource_version,
                                  timeout_seconds=self.timeout_seconds, allow_watch_bookmarks=True,
                                  **self.selectors):
                kind, raw = event["type"], event["raw_object"]
                if kind == "BOOKMARK":
                    self.resource_version = raw["metadata"]["resourceVersion"]
                    continue
                obj = event["object"]
                self.events.append((kind, obj.metadata.name))
                if kind in ("ADDED", "MODIFIED"):
                    self.cache[obj.metadata.name] = obj
                elif kind == "DELETED":
                    self.cache.pop(obj.metadata.name, None)
                else:
                    raise Failure(f"unexpected watch event {kind}: {raw}")
                self.resource_version = obj.metadata.resource_version
        except ApiException as e:
            if e.status != 410:
                raise
            # Watch.stream raises the ERROR event as an ApiException (it retries itself only
            # without timeout_seconds): the history is gone, start over from a list.
            self.expired += 1
            self.relist()

    def run_until(self, what, condition):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            self.run_once()
            if condition(self):
                return
        raise Failure(f"informer: timed out waiting for {what}: lists {self.lists}, 410s "
                      f"{self.expired}, cache {sorted(self.cache)}, events {self.events[-20:]}")


@part("core")
def informer_loop(ctx):
    core = ctx.core
    informer = Informer(core.list_namespaced_config_map, NS, label_selector="informer=yes")
    core.create_namespaced_config_map(NS, config_map_with_value("inf-before", "0", informer="yes"))
    informer.relist()
    eq(sorted(informer.cache), ["inf-before"], "the informer's first list")
    core.create_namespaced_config_map(NS, config_map_with_value("inf-a", "1", informer="yes"))
    core.patch_namespaced_config_map("inf-before", NS, {"data": {"key": "changed"}})
    core.delete_namespaced_config_map("inf-a", NS)
    core.create_namespaced_config_map(NS, config_map_with_value("inf-b", "2", informer="yes"))
    informer.run_until("the cache to follow the writes",
                       lambda i: sorted(i.cache) == ["inf-b", "inf-before"]
                       and i.cache["inf-before"].data["key"] == "changed")
    eq(informer.lists, 1, "the informer relisted without a 410")
    eq(informer.events[:4], [("ADDED", "inf-a"), ("MODIFIED", "inf-before"), ("DELETED", "inf-a"),
                             ("ADDED", "inf-b")], "the informer's events")

    # Let the informer's resourceVersion fall behind the server's history: writes elsewhere
    # past the watch cache's window (4096 events), then a compaction (petset is started with
    # --compaction-interval 1). Its next watch answers 410 Gone; it relists and goes on.
    stale = informer.resource_version
    churn = client.CoreV1Api(ctx.api)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: churn.create_namespaced_config_map(
            "kube-system", {"metadata": {"name": f"churn-{i}"}}), range(4300)))
    time.sleep(2.5)
    core.create_namespaced_config_map(NS, config_map_with_value("inf-after", "3", informer="yes"))
    informer.resource_version = stale
    informer.run_until("a relist after 410 Gone", lambda i: "inf-after" in i.cache)
    check(informer.expired >= 1, f"no 410 Gone was seen (lists {informer.lists})")
    eq(sorted(informer.cache), ["inf-after", "inf-b", "inf-before"], "the cache after the relist")

    # The Status in a 410 ERROR event, as Watch.stream reads it.
    w = watch.Watch()
    try:
        for event in w.stream(core.list_namespaced_config_map, NS, resource_version=stale,
                              timeout_seconds=2):
            raise Failure(f"a watch from a compacted resourceVersion answered {event['type']}")
        raise Failure("a watch from a compacted resourceVersion ended without 410")
    except ApiException as e:
        eq(e.status, 410, "the ERROR event's code")
        check(e.reason.startswith("Expired: too old resource version"), f"410 reason {e.reason!r}")
    # A list from a compacted resourceVersion with resourceVersionMatch=NotOlderThan is fine;
    # an exact one is gone.
    exact = refused(core.list_namespaced_config_map, NS, resource_version=stale,
                    resource_version_match="Exact", code=410, reason="Expired")
    check("too old resource version" in exact.get("message", ""), f"410 list {exact}")


DYNAMIC_CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "dyn", "labels": {"via": "dynamic"}},
    "data": {"a": "1"},
}


@part("core")
def dynamic_client(ctx):
    dyn = dynamic.DynamicClient(ctx.api)
    check(dyn.version["kubernetes"]["gitVersion"].startswith("v1.33"), f"version {dyn.version}")
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    eq(configmaps.name, "configmaps", "discovered resource name")
    check(configmaps.namespaced, "configmaps are namespaced")
    eq(sorted(configmaps.verbs),
       ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], "verbs")
    eq(configmaps.short_names, ["cm"], "shortNames")
    statefulsets = dyn.resources.get(api_version="apps/v1", kind="StatefulSet")
    check(statefulsets.preferred, "apps/v1 is the preferred version")
    check({"status", "scale"} <= set(statefulsets.subresources), f"subresources {statefulsets.subresources}")
    eq(statefulsets.subresources["scale"].kind, "Scale", "the scale subresource's kind")
    eq(statefulsets.categories, ["all"], "statefulset categories")
    eq(dyn.resources.get(api_version="v1", kind="Namespace").namespaced, False, "namespaces")
    eq([r.kind for r in dyn.resources.search(kind="StatefulSet")], ["StatefulSet"], "search by kind")
    try:
        dyn.resources.get(api_version="v1", kind="NoSuchKind")
        raise Failure("an unknown kind was found")
    except ResourceNotFoundError:
        pass

    created = configmaps.create(body=DYNAMIC_CONFIGMAP, namespace=NS)
    eq(created.metadata.name, "dyn", "dynamic create")
    eq(created.data.a, "1", "dynamic create data")
    got = configmaps.get(name="dyn", namespace=NS)
    eq(got.metadata.uid, created.metadata.uid, "dynamic get")
    listed = configmaps.get(namespace=NS, label_selector="via=dynamic")
    eq(listed.kind, "ConfigMapList", "dynamic list kind")
    eq([i.metadata.name for i in listed.items], ["dyn"], "dynamic list")
    patched = configmaps.patch(body={"data": {"b": "2"}}, name="dyn", namespace=NS)
    eq(patched.data.to_dict(), {"a": "1", "b": "2"}, "dynamic strategic merge patch")
    merged = configmaps.patch(body={"data": {"a": None}}, name="dyn", namespace=NS,
                              content_type="application/merge-patch+json")
    eq(merged.data.to_dict(), {"b": "2"}, "dynamic JSON merge patch")
    body = merged.to_dict()
    body["data"] = {"c": "3"}
    replaced = configmaps.replace(body=body, namespace=NS)
    eq(replaced.data.to_dict(), {"c": "3"}, "dynamic replace")

    # Server-side apply (the body is JSON, sent as application/apply-patch+yaml).
    applied = configmaps.server_side_apply(
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn-applied"},
              "data": {"x": "1"}},
        namespace=NS, field_manager="python-e2e")
    eq(applied.data.to_dict(), {"x": "1"}, "server-side apply creates")
    managers = [m.manager for m in applied.metadata.managedFields]
    check("python-e2e" in managers, f"managedFields {managers}")
    # As upstream, another manager's apply of a different value conflicts unless forced.
    conflict = refused(configmaps.server_side_apply,
                       body={"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "dyn-applied"}, "data": {"x": "2"}},
                       namespace=NS, field_manager="someone-else", code=409, reason="Conflict")
    eq(conflict.get("message"),
       'Apply failed with 1 conflict: conflict with "python-e2e": .data.x', "conflict message")
    # Forced, it takes the field; the first manager owns nothing more and is dropped.
    other = configmaps.server_side_apply(
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn-applied"},
              "data": {"x": "2"}},
        namespace=NS, field_manager="someone-else", force_conflicts=True)
    eq(other.data.x, "2", "a second manager's apply")
    eq(sorted(m.manager for m in other.metadata.managedFields), ["someone-else"],
       "managers after a forced apply")

    # Scale through the discovered subresource.
    sts = dyn.resources.get(api_version="apps/v1", kind="StatefulSet")
    sts.create(namespace=NS, body=statefulset_manifest("dyn-web", 1))
    scale = sts.scale.get(name="dyn-web", namespace=NS)
    eq(scale.spec.replicas, 1, "scale spec.replicas")
    sts.scale.patch(name="dyn-web", namespace=NS, body={"spec": {"replicas": 2}})
    eq(sts.get(name="dyn-web", namespace=NS).spec.replicas, 2, "replicas after a scale patch")

    # A dynamic watch of one object by name.
    events = []
    for event in configmaps.watch(namespace=NS, name="dyn", timeout=1):
        events.append((event["type"], event["object"].metadata.name))
    eq(events, [("ADDED", "dyn")], "a dynamic watch by name")

    deleted = configmaps.delete(name="dyn", namespace=NS)
    eq(deleted.status, "Success", "dynamic delete")
    configmaps.delete(name="dyn-applied", namespace=NS, body={"propagationPolicy": "Background"})
    try:
        configmaps.get(name="dyn", namespace=NS)
        raise Failure("a deleted configmap is still there")
    except dynamic.exceptions.NotFoundError as e:
        eq(e.status, 404, "dynamic NotFound status")
    sts.delete(name="dyn-web", namespace=NS, body={"propagationPolicy": "Foreground"})
    wait_for("the dynamic statefulset's pods to go", lambda: no_pods(ctx.core, NS, "app=dyn-web")
             and gone(ctx.apps.read_namespaced_stateful_set, "dyn-web", NS))


def statefulset_manifest(name, replicas):
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template({"app": name}),
        },
    }


@part("core")
def create_from_yaml(ctx):
    """utils.create_from_yaml of a multi-document file of the kinds petset has always served,
    with a Namespace first; then the same file again (409s collected) and with apply=True."""
    path = os.path.join(HERE, "core-stack.yaml")
    created = utils.create_from_yaml(ctx.api, path)
    kinds = [type(o).__name__ for group in created for o in (group if isinstance(group, list) else [group])]
    eq(kinds, ["V1Namespace", "V1Service", "V1ConfigMap", "V1StatefulSet", "V1Pod", "V1Role",
               "V1RoleBinding"], "objects created")
    role = client.RbacAuthorizationV1Api(ctx.api).read_namespaced_role("pod-reader", "py-yaml")
    eq(role.rules[0].resources, ["pods"], "the role's rules")
    binding = client.RbacAuthorizationV1Api(ctx.api).read_namespaced_role_binding("read-pods", "py-yaml")
    eq(binding.role_ref.name, "pod-reader", "the binding's roleRef")
    svc = ctx.core.read_namespaced_service("web", "py-yaml")
    eq(svc.spec.cluster_ip, "None", "the headless service")
    cm = ctx.core.read_namespaced_config_map("web-config", "py-yaml")
    eq(cm.data.get("index.html"), "hello\n", "configmap from yaml")
    sts = ctx.apps.read_namespaced_stateful_set("web", "py-yaml")
    eq(sts.spec.replicas, 2, "statefulset replicas")
    wait_for("the statefulset to be ready", lambda: (s := ctx.apps.read_namespaced_stateful_set_status(
        "web", "py-yaml")).status.ready_replicas == 2 and s)
    eq(len(ready_pods(ctx.core, "py-yaml", "app=web")), 2, "ready pods of the statefulset")

    try:
        utils.create_from_yaml(ctx.api, path)
        raise Failure("creating the same file again succeeded")
    except utils.FailToCreateError as e:
        eq(len(e.api_exceptions), 7, f"failures: {e}")
        eq({x.status for x in e.api_exceptions}, {409}, f"statuses: {e}")
        text = str(e)
        check(text.startswith("Error from server (Conflict): "), f"FailToCreateError text {text[:200]}")
        check('"reason":"AlreadyExists"' in text, f"AlreadyExists in {text[:300]}")

    # apply=True goes through the dynamic client's server-side apply: idempotent. (That path
    # sends the namespace argument, "default" unless given, whatever the objects say; upstream
    # refuses a mismatch as petset does, checked below.)
    utils.create_from_yaml(ctx.api, path, apply=True, namespace="py-yaml")
    try:
        utils.create_from_yaml(ctx.api, path, apply=True)
        raise Failure("applying objects of py-yaml to the default namespace succeeded")
    except utils.FailToCreateError as e:
        eq(len(e.api_exceptions), 6, f"failures: {e}")
        for x in e.api_exceptions:
            body = status_body(x, 400, "BadRequest")
            eq(body.get("message"), "the namespace of the provided object does not match the "
               "namespace sent on the request", "mismatch message")
    eq(ctx.apps.read_namespaced_stateful_set("web", "py-yaml").spec.replicas, 2, "after apply")

    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    single = dict(documents[2])
    single["metadata"] = dict(single["metadata"], name="from-dict")
    utils.create_from_dict(ctx.api, single)
    eq(ctx.core.read_namespaced_config_map("from-dict", "py-yaml").data["index.html"], "hello\n",
       "create_from_dict")

    ctx.core.delete_namespace("py-yaml")
    wait_for("the yaml namespace to be gone", lambda: gone(ctx.core.read_namespace, "py-yaml"))


# ---------------------------------------------------------------------------------------------
# Workloads: the kinds issue 16 adds (each part names the kind it needs and who adds it).

DEPLOYMENT = ("apps/v1", "Deployment", "branch apps")
REPLICASET = ("apps/v1", "ReplicaSet", "branch apps")
REPLICATION_CONTROLLER = ("v1", "ReplicationController", "branch apps")
JOB = ("batch/v1", "Job", "branch batch")
DAEMONSET = ("apps/v1", "DaemonSet", "branch daemonpdb")


def deployment_manifest(name, replicas, image="nginx:1.15.4"):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template({"app": name}, image=image),
        },
    }


@part("workloads", DEPLOYMENT, REPLICASET)
def deployments(ctx):
    apps, core = ctx.apps, ctx.core
    name = "nginx-deployment"
    created = apps.create_namespaced_deployment(body=deployment_manifest(name, 3), namespace=NS)
    # Upstream answers a status from the start (`{}`: every DeploymentStatus field is
    # omitempty), so `d.status.x` never meets None.
    check(created.status is not None, "a created Deployment answers no status (upstream: {})")
    resp = apps.read_namespaced_deployment(name, NS)
    eq(resp.metadata.name, name, "deployment name")
    eq(resp.spec.replicas, 3, "deployment replicas")
    eq(resp.spec.selector.match_labels["app"], name, "deployment selector")
    eq(resp.spec.template.spec.containers[0].image, "nginx:1.15.4", "deployment image")
    eq(resp.spec.template.spec.containers[0].ports[0].container_port, 80, "deployment port")
    eq(resp.spec.strategy.type, "RollingUpdate", "deployment strategy default")
    eq(resp.spec.strategy.rolling_update.max_surge, "25%", "maxSurge default")
    eq(resp.spec.strategy.rolling_update.max_unavailable, "25%", "maxUnavailable default")
    eq(resp.spec.revision_history_limit, 10, "revisionHistoryLimit default")
    eq(resp.spec.progress_deadline_seconds, 600, "progressDeadlineSeconds default")

    def available(replicas, generation=None):
        d = apps.read_namespaced_deployment_status(name, NS)
        s = d.status
        done = (s.observed_generation == (generation or d.metadata.generation)
                and s.updated_replicas == replicas and s.available_replicas == replicas
                and s.ready_replicas == replicas and (s.replicas or 0) == replicas)
        return done and d

    d = wait_for("3 available replicas", lambda: available(3))
    conditions = {c.type: c for c in d.status.conditions}
    eq(conditions["Available"].status, "True", "Available condition")
    eq(conditions["Progressing"].reason, "NewReplicaSetAvailable", "Progressing reason")
    eq(d.metadata.annotations.get("deployment.kubernetes.io/revision"), "1", "revision annotation")
    sets = apps.list_namespaced_replica_set(NS, label_selector=f"app={name}").items
    eq(len(sets), 1, "replica sets of the deployment")
    owner = sets[0].metadata.owner_references[0]
    eq((owner.kind, owner.name, owner.controller), ("Deployment", name, True), "replica set owner")
    check(sets[0].metadata.labels.get("pod-template-hash"), "pod-template-hash label")

    scale = apps.read_namespaced_deployment_scale(name, NS)
    eq(scale.spec.replicas, 3, "scale spec.replicas")
    eq(scale.status.replicas, 3, "scale status.replicas")
    apps.patch_namespaced_deployment_scale(name, NS, {"spec": {"replicas": 1}})
    wait_for("1 available replica", lambda: available(1))
    scale = apps.read_namespaced_deployment_scale(name, NS)
    scale.spec.replicas = 2
    apps.replace_namespaced_deployment_scale(name, NS, scale)
    wait_for("2 available replicas", lambda: available(2))

    patched = apps.patch_namespaced_deployment(
        name, NS, {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.16"}]}}}})
    eq(patched.spec.template.spec.containers[0].image, "nginx:1.16", "image after a patch")
    eq(len(patched.spec.template.spec.containers), 1, "containers merged by name")
    wait_for("the rollout to finish", lambda: available(2, patched.metadata.generation))
    d = apps.read_namespaced_deployment(name, NS)
    eq(d.metadata.annotations.get("deployment.kubernetes.io/revision"), "2", "revision after rollout")
    images = {p.spec.containers[0].image for p in ready_pods(core, NS, f"app={name}")}
    eq(images, {"nginx:1.16"}, "images of the ready pods")

    everywhere = apps.list_deployment_for_all_namespaces(field_selector=f"metadata.name={name}")
    eq(len(everywhere.items), 1, "list_deployment_for_all_namespaces")
    apps.delete_namespaced_deployment(name, NS, body=client.V1DeleteOptions(propagation_policy="Foreground"))
    wait_for("the deployment, its replica sets and pods to go",
             lambda: gone(apps.read_namespaced_deployment, name, NS)
             and not apps.list_namespaced_replica_set(NS, label_selector=f"app={name}").items
             and no_pods(core, NS, f"app={name}"))

    # Orphaning: the replica set stays, without its owner.
    apps.create_namespaced_deployment(NS, deployment_manifest("orphaner", 1))
    sets = wait_for("the orphaner's replica set", lambda: apps.list_namespaced_replica_set(
        NS, label_selector="app=orphaner").items)
    check(sets[0].status is not None, 'a ReplicaSet answers no status (upstream: {"replicas": 0})')
    apps.delete_namespaced_deployment("orphaner", NS, propagation_policy="Orphan")
    wait_for("the orphaner to go", lambda: gone(apps.read_namespaced_deployment, "orphaner", NS))
    left = wait_for("the replica set to lose its owner", lambda: [
        rs for rs in apps.list_namespaced_replica_set(NS, label_selector="app=orphaner").items
        if not rs.metadata.owner_references])
    apps.delete_namespaced_replica_set(left[0].metadata.name, NS, propagation_policy="Background")
    wait_for("the orphaned pods to go", lambda: no_pods(core, NS, "app=orphaner"))


@part("workloads", REPLICATION_CONTROLLER)
def replication_controllers(ctx):
    core = ctx.core
    name = "frontend-rc"
    manifest = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"labels": {"name": name}, "name": name},
        "spec": {
            "replicas": 2,
            "selector": {"name": name},
            "template": {
                "metadata": {"labels": {"name": name}},
                "spec": {"containers": [{"image": "nginx", "name": "nginx",
                                         "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
            },
        },
    }
    resp = core.create_namespaced_replication_controller(body=manifest, namespace=NS)
    eq(resp.metadata.name, name, "created rc")
    # Go always writes status.replicas (not omitempty), so upstream answers {"replicas": 0}.
    check(resp.status is not None, 'a created ReplicationController answers no status (upstream: {"replicas": 0})')
    eq(resp.spec.replicas, 2, "rc replicas")
    resp = core.read_namespaced_replication_controller(name=name, namespace=NS)
    eq(resp.spec.replicas, 2, "read rc replicas")
    wait_for("2 ready rc replicas", lambda: core.read_namespaced_replication_controller_status(
        name, NS).status.ready_replicas == 2)
    eq(len(ready_pods(core, NS, f"name={name}")), 2, "the rc's ready pods")
    scale = core.read_namespaced_replication_controller_scale(name, NS)
    eq(scale.spec.replicas, 2, "rc scale")
    core.patch_namespaced_replication_controller_scale(name, NS, {"spec": {"replicas": 3}})
    wait_for("3 ready rc replicas", lambda: core.read_namespaced_replication_controller(
        name, NS).status.ready_replicas == 3)
    core.patch_namespaced_replication_controller(name, NS, {"spec": {"replicas": 1}})
    wait_for("1 rc pod", lambda: len(core.list_namespaced_pod(NS, label_selector=f"name={name}").items) == 1)
    core.delete_namespaced_replication_controller(name=name, namespace=NS, propagation_policy="Background")
    wait_for("the rc and its pods to go", lambda: gone(core.read_namespaced_replication_controller, name, NS)
             and no_pods(core, NS, f"name={name}"))


@part("workloads", JOB)
def jobs(ctx):
    batch, core = ctx.batch, ctx.core
    name = "test-job"
    manifest = {
        "kind": "Job",
        "apiVersion": "batch/v1",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"name": name},
                "spec": {
                    "containers": [{"image": "busybox", "name": name, "command": ["sh", "-c", "sleep 5"]}],
                    "restartPolicy": "Never",
                },
            }
        },
    }
    resp = batch.create_namespaced_job(body=manifest, namespace=NS)
    eq(resp.metadata.name, name, "created job")
    eq(resp.spec.backoff_limit, 6, "backoffLimit default")
    eq(resp.spec.completions, 1, "completions default")
    eq(resp.spec.parallelism, 1, "parallelism default")
    eq(resp.spec.completion_mode, "NonIndexed", "completionMode default")
    labels = resp.spec.template.metadata.labels
    eq(labels.get("job-name"), name, "job-name label")
    eq(labels.get("batch.kubernetes.io/job-name"), name, "batch.kubernetes.io/job-name label")
    check(resp.spec.selector.match_labels.get("batch.kubernetes.io/controller-uid"), "controller-uid selector")
    resp = batch.read_namespaced_job(name=name, namespace=NS)
    eq(resp.metadata.name, name, "read job")

    # A simulated node runs a pod that does not restart to completion (exit 0 a moment after
    # it started), so the Job completes.
    def condition(job_name, kind):
        job = batch.read_namespaced_job_status(job_name, NS)
        found = [c for c in job.status.conditions or [] if c.type == kind and c.status == "True"]
        return found and job

    done = wait_for("the job to complete", lambda: condition(name, "Complete"))
    eq(done.status.succeeded, 1, "succeeded pods")
    check(not done.status.active, f"active pods of a complete job: {done.status.active}")
    check(done.status.start_time and done.status.completion_time, "start and completion times")
    pods = core.list_namespaced_pod(NS, label_selector=f"job-name={name}").items
    eq([p.status.phase for p in pods], ["Succeeded"], "the job's pod")

    # Suspended at creation: no pod until resumed by a patch.
    suspended = dict(manifest, metadata={"name": "later"})
    suspended["spec"] = dict(manifest["spec"], suspend=True)
    batch.create_namespaced_job(NS, suspended)
    wait_for("the Suspended condition", lambda: condition("later", "Suspended"))
    check(no_pods(core, NS, "job-name=later"), "a suspended job made a pod")
    resumed = batch.patch_namespaced_job("later", NS, {"spec": {"suspend": False}})
    eq(resumed.spec.suspend, False, "suspend after a patch")
    wait_for("the resumed job to complete", lambda: condition("later", "Complete"))

    listed = batch.list_namespaced_job(NS).items
    eq(sorted(j.metadata.name for j in listed), ["later", name], "jobs listed")
    everywhere = batch.list_job_for_all_namespaces(label_selector=f"job-name={name}")
    eq([j.metadata.name for j in everywhere.items], [name], "jobs by their label everywhere")
    batch.delete_namespaced_job(name=name, body={"propagationPolicy": "Background"}, namespace=NS)
    batch.delete_namespaced_job("later", NS, propagation_policy="Foreground")
    wait_for("the jobs and their pods to go", lambda: gone(batch.read_namespaced_job, name, NS)
             and gone(batch.read_namespaced_job, "later", NS)
             and no_pods(core, NS, f"job-name in ({name}, later)"))


@part("workloads", DAEMONSET)
def daemonsets(ctx):
    apps, core = ctx.apps, ctx.core
    name = "nginx-app"
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"labels": {"app": "nginx-ds"}, "name": name},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx-ds"}},
            "template": {
                "metadata": {"labels": {"app": "nginx-ds"}, "name": name},
                "spec": {"containers": [{"name": "nginx-app", "image": "nginx:1.15.4"}]},
            },
            "updateStrategy": {"type": "RollingUpdate"},
        },
    }
    apps.create_namespaced_daemon_set(NS, body=body)
    resp = apps.read_namespaced_daemon_set(name, NS)
    eq(resp.metadata.name, name, "daemonset name")
    eq(resp.spec.selector.match_labels["app"], "nginx-ds", "daemonset selector")
    eq(resp.spec.template.spec.containers[0].image, "nginx:1.15.4", "daemonset image")
    eq(resp.spec.update_strategy.rolling_update.max_unavailable, 1, "maxUnavailable default")
    nodes = len(core.list_node().items)
    wait_for("a ready pod on every node", lambda: (s := apps.read_namespaced_daemon_set_status(
        name, NS).status).number_ready == nodes and s.desired_number_scheduled == nodes
        and s.current_number_scheduled == nodes)
    patched = apps.patch_namespaced_daemon_set(
        name, NS, {"spec": {"template": {"spec": {"containers": [{"name": "nginx-app", "image": "nginx:1.16"}]}}}})
    wait_for("the daemonset's rolling update", lambda: (
        (d := apps.read_namespaced_daemon_set_status(name, NS)).status.observed_generation
        == patched.metadata.generation and d.status.updated_number_scheduled == nodes
        and d.status.number_ready == nodes))
    images = {p.spec.containers[0].image for p in ready_pods(core, NS, "app=nginx-ds")}
    eq(images, {"nginx:1.16"}, "images after the daemonset's update")
    apps.delete_namespaced_daemon_set(name, NS, body=client.V1DeleteOptions(propagation_policy="Foreground"))
    wait_for("the daemonset and its pods to go", lambda: gone(apps.read_namespaced_daemon_set, name, NS)
             and no_pods(core, NS, "app=nginx-ds"))


@part("workloads", DEPLOYMENT)
def create_from_yaml_stack(ctx):
    """utils.create_from_yaml of Service + ConfigMap + StatefulSet + Deployment in one file."""
    path = os.path.join(HERE, "stack.yaml")
    created = utils.create_from_yaml(ctx.api, path, namespace=NS)
    objects = [o for group in created for o in (group if isinstance(group, list) else [group])]
    eq([type(o).__name__ for o in objects], ["V1Service", "V1ConfigMap", "V1StatefulSet", "V1Deployment"],
       "objects created")
    check(all(o.status is not None for o in objects[2:]), "a created workload answers no status")
    wait_for("the stack's deployment", lambda: ctx.apps.read_namespaced_deployment_status(
        "stack-api", NS).status.available_replicas == 2)
    wait_for("the stack's statefulset", lambda: ctx.apps.read_namespaced_stateful_set_status(
        "stack-db", NS).status.ready_replicas == 1)
    utils.create_from_yaml(ctx.api, path, namespace=NS, apply=True)
    for delete, name in ((ctx.apps.delete_namespaced_deployment, "stack-api"),
                         (ctx.apps.delete_namespaced_stateful_set, "stack-db"),
                         (ctx.core.delete_namespaced_service, "stack-db"),
                         (ctx.core.delete_namespaced_config_map, "stack-config")):
        delete(name, NS, propagation_policy="Foreground")
    wait_for("the stack's pods to go", lambda: no_pods(ctx.core, NS, "stack"))


# ---------------------------------------------------------------------------------------------


def setup(ctx):
    try:
        ctx.core.create_namespace({"metadata": {"name": NS}})
    except ApiException as e:
        if e.status != 409:
            raise
    # Pods need the namespace's default ServiceAccount, which a controller makes.
    wait_for("the default ServiceAccount", lambda: ctx.core.read_namespaced_service_account("default", NS))


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    names = []
    for arg in argv:
        if arg in PARTS:
            names.append(arg)
        else:
            group = [n for n, (g, _, _) in PARTS.items() if g == arg]
            if not group:
                print(f"no part or group {arg!r}; parts: {', '.join(PARTS)}", file=sys.stderr)
                return 2
            names.extend(group)
    ctx = Context()
    setup(ctx)
    passed, failed, unserved = [], [], []
    for name in names:
        _, needs, function = PARTS[name]
        missing = [f"{kind} ({gv}, added on {who})" for gv, kind, who in needs if not ctx.served(gv, kind)]
        if missing:
            print(f"NOT SERVED {name}: needs {', '.join(missing)}", flush=True)
            unserved.append(name)
            continue
        started = time.monotonic()
        try:
            function(ctx)
        except Failure as e:
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc(limit=-3, file=sys.stdout)
            failed.append(name)
        except ApiException as e:
            print(f"FAIL {name}: unexpected ApiException {e.status} {e.reason}: {e.body}", flush=True)
            traceback.print_exc(limit=-3, file=sys.stdout)
            failed.append(name)
        except Exception as e:  # the client choking on an answer is a failure too
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
            failed.append(name)
        else:
            print(f"PASS {name} ({time.monotonic() - started:.1f}s)", flush=True)
            passed.append(name)
    print(f"python client parts — passed {len(passed)}, failed {len(failed)} {failed}, "
          f"not served {len(unserved)} {unserved}", flush=True)
    return 0 if not failed and not unserved else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
