"""The chart's rendered pods run as Docker containers, with what their specs say (test_chart_pods.py).

A rendered release becomes a small "cluster" on one Docker network:
- Strimzi's part: tansu (the broker image) behind strimzi_front.py (the app image), reachable under the bootstrap
  and broker host names Strimzi's services have, authenticating as the rendered listener says; the Secrets the
  Cluster and User Operators would create (cluster CA, one per KafkaUser), made with a throwaway PKI; the topics
  of the rendered KafkaTopics.
- The kubelet's part: every pod template of a Deployment, StatefulSet or Job becomes `docker run` with its
  command, env (ConfigMaps and Secrets resolved), volumes, security context and resources; probes are run from a
  prober container on the network (httpGet, tcpSocket) or by `docker exec` (exec).
Every field of a pod spec is classified: HONOURED (and how) or NOT_HONOURED (and why); a field in neither fails
the test, so a new field in the chart has to be placed in one of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.containers import dockerkit
from tests.containers.dockerkit import REPO, docker

if str(REPO / "tests" / "chart") not in sys.path:
    sys.path.insert(0, str(REPO / "tests" / "chart"))
import chartkit

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
POD_OWNER_KINDS = ("DaemonSet", "CronJob", "ReplicaSet", "Pod")  # none rendered today: fail if one appears
FRONT_SCRIPT = Path(__file__).with_name("strimzi_front.py")
TEST_ADMIN = "streamtrain-test-admin"  # a KafkaUser of the test's own, for reading topics
BROKER_PORT = 9092  # tansu's plaintext port, reached only by the front

# Pod-spec fields (paths below the pod template; [] = every item of a list) and how each is honoured.
HONOURED: dict[str, str] = {
    "metadata.labels": "docker --label; Services select pods by them (network aliases)",
    "metadata.annotations": "docker --label",
    "spec.containers[].name": "container name suffix",
    "spec.containers[].image": "the rendered image, which the run's values (image.repository, image.tag) point at "
                               "the app image the container tests build (no registry here)",
    "spec.containers[].command": "docker --entrypoint (first word) and arguments",
    "spec.containers[].args": "appended after the command",
    "spec.containers[].envFrom[].configMapRef.name": "the rendered ConfigMap's data as environment",
    "spec.containers[].envFrom[].secretRef.name": "the Secret's data as environment",
    "spec.containers[].env[].name": "--env-file (env overrides envFrom, as in Kubernetes)",
    "spec.containers[].env[].value": "--env-file",
    "spec.containers[].env[].valueFrom.fieldRef.fieldPath": "metadata.name/namespace resolved",
    "spec.containers[].env[].valueFrom.secretKeyRef.name": "resolved from the Secret",
    "spec.containers[].env[].valueFrom.secretKeyRef.key": "resolved from the Secret",
    "spec.containers[].ports[].name": "named probe ports resolved to containerPort",
    "spec.containers[].ports[].containerPort": "probe and Service ports",
    "spec.containers[].ports[].protocol": "TCP only (asserted)",
    "spec.containers[].volumeMounts[].name": "the volume mounted at mountPath",
    "spec.containers[].volumeMounts[].mountPath": "docker -v / --tmpfs target",
    "spec.containers[].volumeMounts[].readOnly": "docker -v ...:ro",
    "spec.containers[].resources.limits.cpu": "docker --cpus",
    "spec.containers[].resources.limits.memory": "docker --memory (and --memory-swap: no swap)",
    "spec.containers[].resources.requests.cpu": "docker --cpu-shares (millicores x 1024 / 1000, as the kubelet)",
    "spec.containers[].resources.requests.memory": "docker --memory-reservation",
    "spec.containers[].securityContext.runAsUser": "docker --user (container level wins over pod level)",
    "spec.containers[].securityContext.runAsGroup": "docker --user",
    "spec.containers[].securityContext.runAsNonRoot": "the user id is asserted non-zero before the run",
    "spec.containers[].securityContext.readOnlyRootFilesystem": "docker --read-only",
    "spec.containers[].securityContext.allowPrivilegeEscalation": "docker --security-opt no-new-privileges",
    "spec.containers[].securityContext.privileged": "false: no --privileged (asserted)",
    "spec.containers[].securityContext.capabilities.drop": "docker --cap-drop",
    "spec.containers[].securityContext.capabilities.add": "docker --cap-add",
    "spec.containers[].securityContext.seccompProfile.type": "RuntimeDefault: Docker's default seccomp profile "
                                                             "(asserted present in `docker info`)",
    "spec.containers[].startupProbe": "run as the kubelet would: every periodSeconds, given up after "
                                      "failureThreshold failures (initialDelaySeconds, timeoutSeconds too)",
    "spec.containers[].livenessProbe.httpGet": "run from the prober container against the pod's IP",
    "spec.containers[].livenessProbe.exec": "docker exec",
    "spec.containers[].livenessProbe.tcpSocket": "a connect from the prober container",
    "spec.containers[].livenessProbe.timeoutSeconds": "the probe's own timeout",
    "spec.containers[].readinessProbe.httpGet": "polled every periodSeconds until it passes",
    "spec.containers[].readinessProbe.exec": "docker exec",
    "spec.containers[].readinessProbe.tcpSocket": "a connect from the prober container",
    "spec.containers[].readinessProbe.periodSeconds": "the polling interval",
    "spec.containers[].readinessProbe.timeoutSeconds": "the probe's own timeout",
    "spec.containers[].workingDir": "docker --workdir",
    "spec.securityContext.runAsUser": "docker --user",
    "spec.securityContext.runAsGroup": "docker --user",
    "spec.securityContext.runAsNonRoot": "asserted non-zero",
    "spec.securityContext.fsGroup": "docker --group-add; the PVC's volume chgrp'd to it with setgid directories "
                                    "and group rw (as the kubelet does); Secret files root:fsGroup; emptyDirs "
                                    "root:fsGroup mode 2777",
    "spec.securityContext.fsGroupChangePolicy": "OnRootMismatch: ownership applied only when the volume's root "
                                                "does not have it yet",
    "spec.securityContext.seccompProfile.type": "RuntimeDefault: Docker's default seccomp profile",
    "spec.automountServiceAccountToken": "false: no token is mounted (there is none to mount)",
    "spec.enableServiceLinks": "false: no service variables are injected (Docker injects none)",
    "spec.restartPolicy": "docker --restart (Always: unless-stopped, OnFailure: on-failure, Never: no); "
                          "restarts are asserted to be 0",
    "spec.terminationGracePeriodSeconds": "docker --stop-timeout",
    "spec.hostname": "docker --hostname",
    "spec.volumes[].name": "matched to volumeMounts",
    "spec.volumes[].emptyDir.sizeLimit": "a tmpfs volume of that size (in memory, not on the node's disk), "
                                         "root:fsGroup mode 2777 as the kubelet makes it",
    "spec.volumes[].emptyDir.medium": "tmpfs either way",
    "spec.volumes[].persistentVolumeClaim.claimName": "a Docker named volume per claim, shared by the pods",
    "spec.volumes[].persistentVolumeClaim.readOnly": "docker -v ...:ro",
    "spec.volumes[].secret.secretName": "the Strimzi-shaped Secret's files, bind-mounted read-only",
    "spec.volumes[].secret.items[].key": "only the listed keys are written (a missing key fails, as a mount does)",
    "spec.volumes[].secret.items[].path": "file name in the volume",
    "spec.volumes[].secret.items[].mode": "file mode",
    "spec.volumes[].secret.defaultMode": "file mode",
    "spec.volumes[].configMap.name": "the rendered ConfigMap's files, bind-mounted read-only",
    "spec.volumes[].configMap.items[].key": "only the listed keys",
    "spec.volumes[].configMap.items[].path": "file name",
    "spec.volumes[].configMap.defaultMode": "file mode",
}

NOT_HONOURED: dict[str, str] = {
    "spec.serviceAccountName": "no API server: a ServiceAccount has nothing to grant",
    "spec.affinity": "one Docker host: no nodes to schedule across",
    "spec.nodeSelector": "one Docker host",
    "spec.tolerations": "one Docker host",
    "spec.topologySpreadConstraints": "one Docker host",
    "spec.imagePullSecrets": "no registry: the image is built locally",
    "spec.containers[].imagePullPolicy": "no registry: the image is built locally",
    "spec.containers[].livenessProbe.periodSeconds": "liveness is checked to pass, not watched for the pod's life",
    "spec.containers[].livenessProbe.failureThreshold": "no restart on repeated liveness failures",
    "spec.containers[].readinessProbe.failureThreshold": "no endpoint removal on repeated readiness failures",
}

# Workload fields outside the pod template.
WORKLOAD_FIELDS: dict[str, str] = {
    "spec.replicas": "HONOURED: that many containers",
    "spec.selector": "HONOURED: asserted to select the pod template's labels",
    "spec.template": "the pod template (above)",
    "spec.serviceName": "HONOURED: StatefulSet pods get <pod>.<service> aliases",
    "spec.volumeClaimTemplates": "HONOURED: a named volume <template>-<pod> per pod",
    "spec.strategy": "NOT HONOURED: no rollouts (each pod is started once)",
    "spec.revisionHistoryLimit": "NOT HONOURED: no rollouts",
    "spec.updateStrategy": "NOT HONOURED: no rollouts",
    "spec.podManagementPolicy": "NOT HONOURED: pods start together",
    "spec.persistentVolumeClaimRetentionPolicy": "NOT HONOURED: volumes go at tear-down",
    "spec.backoffLimit": "NOT HONOURED: a failed Job pod fails the test instead of being retried",
    "spec.ttlSecondsAfterFinished": "NOT HONOURED: the finished pod stays until tear-down",
    "spec.completions": "NOT HONOURED: one completion",
    "spec.parallelism": "NOT HONOURED: one pod",
}

# Rendered kinds and what stands in for them.
KINDS: dict[str, str] = {
    "Deployment": "HONOURED: its pods run",
    "StatefulSet": "HONOURED: its pods run",
    "Job": "HONOURED: its pod runs to completion",
    "ConfigMap": "HONOURED: envFrom and volumes",
    "Secret": "HONOURED: envFrom and volumes",
    "PersistentVolumeClaim": "HONOURED: a Docker named volume (its spec fields: OBJECT_FIELDS)",
    "Service": "HONOURED: DNS names as network aliases of the selected pods (port must equal targetPort)",
    "KafkaTopic": "HONOURED: created with tansu's client (its spec fields: OBJECT_FIELDS)",
    "KafkaUser": "HONOURED: authentication (scram-sha-512 or tls) by the front; NOT HONOURED: authorization "
                 "(ACLs: tansu has none)",
    "Kafka": "HONOURED: the clients listener (port, tls, authentication) by tansu and the front; NOT HONOURED: "
             "version, replicas, storage, config, resources, the external listener, networkPolicyPeers",
    "KafkaNodePool": "NOT HONOURED: one tansu with memory storage stands in",
    "ServiceAccount": "NOT HONOURED: no API server",
    "Role": "NOT HONOURED: no API server (the operators' Role for kubectl streamtrain binds nobody here)",
    "NetworkPolicy": "NOT HONOURED: the Docker network does not filter",
    "PodDisruptionBudget": "NOT HONOURED: no evictions",
    "HorizontalPodAutoscaler": "NOT HONOURED: no metrics server; replicas stay as rendered",
    "ServiceMonitor": "NOT HONOURED: no Prometheus",
}

# The spec fields of the stood-in objects whose fields matter one by one (the NOT HONOURED ones are printed).
OBJECT_FIELDS: dict[str, dict[str, str]] = {
    "PersistentVolumeClaim": {
        "spec.accessModes": "NOT HONOURED: a Docker named volume is open to every container that mounts it",
        "spec.resources.requests.storage": "NOT HONOURED: a Docker named volume has no size",
        "spec.storageClassName": "NOT HONOURED: Docker's local volume driver stands in for any class",
        "spec.volumeMode": "NOT HONOURED: always a filesystem",
    },
    "KafkaTopic": {
        "spec.topicName": "HONOURED: the topic's name",
        "spec.partitions": "HONOURED: tansu topic create --partitions",
        "spec.replicas": "NOT HONOURED: one tansu broker holds every partition",
        "spec.config": "NOT HONOURED: tansu keeps no topic settings (retention, cleanup.policy, min.insync.replicas, "
                       "max.message.bytes, ...)",
    },
}

MAP_KEYS = {"labels", "annotations", "matchLabels", "nodeSelector", "affinity", "startupProbe"}


def field_paths(obj: Any, prefix: str = "") -> Iterator[str]:
    """Leaf paths of a rendered object; maps of labels (and whole affinity/startup blocks) count as one field."""
    if isinstance(obj, dict) and prefix.rsplit(".", 1)[-1] not in MAP_KEYS:
        for key, value in obj.items():
            yield from field_paths(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        for item in obj:
            yield from field_paths(item, prefix + "[]")
    else:
        yield prefix


def _known(path: str, table: dict[str, str]) -> str | None:
    """The table entry for a path or for one of its parents."""
    while path:
        if path in table:
            return path
        path = path.rsplit(".", 1)[0] if "." in path else ""
    return None


@dataclass
class Fields:
    honoured: dict[str, str] = field(default_factory=dict)
    not_honoured: dict[str, str] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)

    def classify(self, kind: str, workload: dict[str, Any]) -> None:
        template = workload["spec"]["template"]
        for path in field_paths(template):
            if (key := _known(path, HONOURED)) is not None:
                self.honoured[key] = HONOURED[key]
            elif (key := _known(path, NOT_HONOURED)) is not None:
                self.not_honoured[key] = NOT_HONOURED[key]
            else:
                self.unknown.add(f"{kind} pod template: {path}")
        for path in field_paths({k: v for k, v in workload["spec"].items() if k != "template"}, "spec"):
            key = _known(path, WORKLOAD_FIELDS)
            if key is None:
                self.unknown.add(f"{kind}: {path}")
            elif WORKLOAD_FIELDS[key].startswith("NOT"):
                self.not_honoured[f"{kind}.{key}"] = WORKLOAD_FIELDS[key]

    def classify_kinds(self, docs: list[dict[str, Any]]) -> None:
        for kind in sorted({d["kind"] for d in docs}):
            how = KINDS.get(kind)
            if how is None:
                self.unknown.add(f"kind {kind}")
            elif "NOT HONOURED" in how:
                self.not_honoured[f"kind {kind}"] = how
        for doc in (d for d in docs if d["kind"] in OBJECT_FIELDS):
            table = OBJECT_FIELDS[doc["kind"]]
            for path in field_paths(doc["spec"], "spec"):
                key = _known(path, table)
                if key is None:
                    self.unknown.add(f"{doc['kind']}: {path}")
                elif table[key].startswith("NOT"):
                    self.not_honoured[f"{doc['kind']}.{key}"] = table[key]


def classify_release(docs: list[dict[str, Any]]) -> Fields:
    """Every field of a rendered release's workloads and stood-in objects, as honoured, not honoured or unknown."""
    fields = Fields()
    for workload in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        fields.classify(workload["kind"], workload)
    fields.classify_kinds(docs)
    return fields


# ---- quantities ----------------------------------------------------------------------------------------------

_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(text: str | int) -> int:
    match = re.fullmatch(r"([0-9.]+)([kMGT]i?|)", str(text))
    assert match, f"unsupported quantity {text!r}"
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def cpu_cores(text: str | int | float) -> float:
    value = str(text)
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


# ---- Strimzi's side: PKI, Secrets, topics ---------------------------------------------------------------------

@dataclass(frozen=True)
class Listener:
    bootstrap_host: str
    broker_host: str  # what the broker advertises (Strimzi: <cluster>-<pool>-0.<cluster>-kafka-brokers.<ns>.svc)
    port: int
    tls: bool
    authentication: str  # scram-sha-512 | tls | none
    cluster: str


def listener_of(docs: list[dict[str, Any]]) -> Listener:
    kafka = chartkit.of_kind(docs, "Kafka")[0]
    pool = chartkit.of_kind(docs, "KafkaNodePool")[0]
    clients = next(li for li in kafka["spec"]["kafka"]["listeners"] if li["type"] == "internal")
    cluster, namespace = kafka["metadata"]["name"], kafka["metadata"]["namespace"]
    return Listener(f"{cluster}-kafka-bootstrap.{namespace}.svc",
                    f"{cluster}-{pool['metadata']['name']}-0.{cluster}-kafka-brokers.{namespace}.svc",
                    int(clients["port"]), bool(clients["tls"]),
                    clients.get("authentication", {}).get("type", "none"), cluster)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/O=io.strimzi/CN={name}", cwd=cwd)


def _leaf(name: str, ca: str, subject: str, extensions: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)


def _p12(name: str, password: str, cwd: Path, with_key: bool) -> bytes:
    args = ["-in", f"{name}.crt"] + (["-inkey", f"{name}.key"] if with_key else ["-nokeys"])
    _openssl("pkcs12", "-export", *args, "-out", f"{name}.p12", "-passout", f"pass:{password}", cwd=cwd)
    return (cwd / f"{name}.p12").read_bytes()


@dataclass
class Strimzi:
    """What the Cluster and User Operators would have made: certificates, user credentials, their Secrets."""

    listener: Listener
    pki: Path
    users: list[str]
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, docs: list[dict[str, Any]], pki: Path) -> Strimzi:
        listener = listener_of(docs)
        users = [u["metadata"]["name"] for u in chartkit.of_kind(docs, "KafkaUser")]
        made = cls(listener, pki, users)
        _ca("cluster-ca", pki)
        names = [listener.bootstrap_host, listener.broker_host]
        short = [listener.bootstrap_host.split(".")[0], listener.bootstrap_host.rsplit(".", 1)[0]]
        sans = ",".join(f"DNS:{n}" for n in [*names, *short, f"{listener.bootstrap_host}.cluster.local"])
        _leaf("broker", "cluster-ca", f"/O=io.strimzi/CN={listener.cluster}-kafka",
              f"subjectAltName={sans}\nextendedKeyUsage=serverAuth", pki)
        ca_password = secrets.token_urlsafe(12)
        made.secrets[f"{listener.cluster}-cluster-ca-cert"] = {
            "ca.crt": (pki / "cluster-ca.crt").read_bytes(),
            "ca.p12": _p12("cluster-ca", ca_password, pki, with_key=False),
            "ca.password": ca_password.encode(),
        }
        _ca("clients-ca", pki)
        for user in [*users, TEST_ADMIN]:
            made.secrets[user] = made._user_secret(user)
        return made

    def _user_secret(self, user: str) -> dict[str, bytes]:
        if self.listener.authentication == "tls":
            _leaf(user, "clients-ca", f"/CN={user}", "extendedKeyUsage=clientAuth", self.pki)
            password = secrets.token_urlsafe(12)
            return {"ca.crt": (self.pki / "clients-ca.crt").read_bytes(), "user.crt": (self.pki / f"{user}.crt")
                    .read_bytes(), "user.key": (self.pki / f"{user}.key").read_bytes(),
                    "user.p12": _p12(user, password, self.pki, with_key=True), "user.password": password.encode()}
        password = secrets.token_urlsafe(24)  # Strimzi: a random alphanumeric password
        self.passwords[user] = password
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" '
                f'password="{password}";')
        return {"password": password.encode(), "sasl.jaas.config": jaas.encode()}

    def client_conf(self, where: str) -> dict[str, Any]:
        """librdkafka settings of the test's own KafkaUser, with its files under `where` in a container."""
        listener = self.listener
        conf: dict[str, Any] = {"bootstrap.servers": f"{listener.bootstrap_host}:{listener.port}"}
        scram = listener.authentication == "scram-sha-512"
        conf["security.protocol"] = ("SASL_" if scram else "") + ("SSL" if listener.tls else "PLAINTEXT")
        if listener.tls:
            conf["ssl.ca.location"] = f"{where}/cluster-ca.crt"
        if scram:
            conf.update({"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": TEST_ADMIN,
                         "sasl.password": self.passwords[TEST_ADMIN]})
        elif listener.authentication == "tls":
            conf.update({"ssl.certificate.location": f"{where}/{TEST_ADMIN}.crt",
                         "ssl.key.location": f"{where}/{TEST_ADMIN}.key"})
        return conf


# ---- the kubelet's side ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pod:
    component: str
    kind: str
    name: str  # the pod name, as the controller would make it; also the container's host name
    workload: dict[str, Any]

    @property
    def template(self) -> dict[str, Any]:
        return dict(self.workload["spec"]["template"])

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.template["spec"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.template.get("metadata", {}).get("labels", {}))


def _suffix(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def pods_of(docs: list[dict[str, Any]]) -> list[Pod]:
    """One Pod per replica of every Deployment, StatefulSet and Job, named as their controllers name them."""
    owners = [d for d in chartkit.workloads(docs) if d["kind"] in POD_OWNER_KINDS]
    assert not owners, f"pod owners this harness does not run: {[o['kind'] for o in owners]}"
    pods = []
    for workload in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        name, kind = workload["metadata"]["name"], workload["kind"]
        selector = workload["spec"].get("selector")
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector is None or chartkit.selector_matches(selector, labels), f"{kind}/{name}: selector"
        template_hash = _suffix(json.dumps(workload["spec"]["template"], sort_keys=True), 10)
        for i in range(int(workload["spec"].get("replicas", 1))):
            pod_name = {"StatefulSet": f"{name}-{i}", "Job": f"{name}-{_suffix(f'{template_hash}{i}', 5)}"}.get(
                kind, f"{name}-{template_hash}-{_suffix(str(i), 5)}")
            pods.append(Pod(chartkit.component_of(workload), kind, pod_name, workload))
    return pods


@dataclass
class Kubelet:
    """Turns pods into containers of one stack, and runs their probes."""

    stack: str
    image: str
    docs: list[dict[str, Any]]
    strimzi: Strimzi
    workdir: Path
    namespace: str = chartkit.NAMESPACE
    prober: str = ""
    containers: dict[str, str] = field(default_factory=dict)  # pod name -> container name
    volumes_owned: set[str] = field(default_factory=set)

    @property
    def network(self) -> str:
        return f"{self.stack}-net"

    @property
    def label(self) -> str:
        return f"{dockerkit.STACK_LABEL}={self.stack}"

    # -- objects

    def config_map(self, name: str) -> dict[str, str]:
        return dict(chartkit.one(self.docs, "ConfigMap", name).get("data", {}))

    def secret(self, name: str) -> dict[str, bytes]:
        assert name in self.strimzi.secrets, f"Secret {name} is neither rendered nor made by Strimzi"
        return self.strimzi.secrets[name]

    # -- env

    def env(self, pod: Pod, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_map(source["configMapRef"]["name"]))
            else:
                env.update({k: v.decode() for k, v in self.secret(source["secretRef"]["name"]).items()})
        for item in container.get("env", []):
            env[item["name"]] = self._env_value(pod, item)
        bad = [k for k, v in env.items() if "\n" in str(v)]
        assert not bad, f"multi-line env values cannot go into an env file: {bad}"
        return {k: str(v) for k, v in env.items()}

    def _env_value(self, pod: Pod, item: dict[str, Any]) -> str:
        if "value" in item:
            return str(item["value"])
        source = item["valueFrom"]
        if "fieldRef" in source:
            return {"metadata.name": pod.name, "metadata.namespace": self.namespace}[source["fieldRef"]["fieldPath"]]
        ref = source["secretKeyRef"]
        return self.secret(ref["name"])[ref["key"]].decode()

    # -- volumes

    def _files_volume(self, pod: Pod, volume: dict[str, Any], fs_group: int | None) -> Path:
        """A Secret or ConfigMap volume as files: the listed items (or every key), root:fsGroup, the given mode."""
        secret = "secret" in volume
        source = volume["secret"] if secret else volume["configMap"]
        data = (self.secret(source["secretName"]) if secret
                else {k: v.encode() for k, v in self.config_map(source["name"]).items()})
        folder = self.workdir / "volumes" / pod.name / volume["name"]
        folder.mkdir(parents=True)
        folder.chmod(0o755)
        default_mode = int(source.get("defaultMode", 0o644))
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            assert item["key"] in data, f"{pod.name}: volume {volume['name']} wants key {item['key']!r}, " \
                                        f"which the object does not have ({sorted(data)})"
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])
            target.chmod(int(item.get("mode", default_mode)))
            _chown(target, 0, fs_group if fs_group is not None else 0)
        return folder

    def _claim_volume(self, claim: str, fs_group: int | None) -> str:
        name = f"{self.stack}-{claim}"
        if name not in self.volumes_owned:
            docker("volume", "create", "--label", self.label, name)
            self.volumes_owned.add(name)
            if fs_group is not None:  # fsGroupChangePolicy OnRootMismatch: a new volume's root always mismatches
                docker("run", "--rm", "--label", self.label, "--user", "0", "--network", "none", "-v",
                       f"{name}:/volume", "--entrypoint", "sh", self.image, "-c",
                       f"chgrp -R {fs_group} /volume && chmod -R g+rwX /volume && "
                       "find /volume -type d -exec chmod g+s {} +")
        return name

    def _empty_dir(self, pod: Pod, volume: dict[str, Any], fs_group: int | None) -> str:
        """An emptyDir as the kubelet makes it (root:fsGroup, mode 2777), on tmpfs of its sizeLimit. A volume of
        the local driver, mounted nocopy: `--tmpfs` over a directory the image has keeps that directory's mode."""
        name = f"{self.stack}-{pod.name}-{volume['name']}"[:200]
        size = quantity_bytes(volume["emptyDir"].get("sizeLimit", "1Gi"))
        owner = f",gid={fs_group}" if fs_group is not None else ""
        docker("volume", "create", "--label", self.label, "--driver", "local", "--opt", "type=tmpfs", "--opt",
               "device=tmpfs", "--opt", f"o=size={size},mode=2777{owner}", name)
        return name

    def mounts(self, pod: Pod, container: dict[str, Any]) -> list[str]:
        spec = pod.spec
        fs_group = spec.get("securityContext", {}).get("fsGroup")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in pod.workload["spec"].get("volumeClaimTemplates", [])}
        args: list[str] = []
        for mount in container.get("volumeMounts", []):
            path, read_only = mount["mountPath"], bool(mount.get("readOnly"))
            assert "subPath" not in mount, "subPath is not handled"
            if mount["name"] in claims:  # StatefulSet: one volume per pod, <template>-<pod>
                name = self._claim_volume(f"{mount['name']}-{pod.name}", fs_group)
                args += ["-v", f"{name}:{path}{':ro' if read_only else ''}"]
                continue
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                name = self._empty_dir(pod, volume, fs_group)
                args += ["-v", f"{name}:{path}:{'ro,' if read_only else ''}nocopy"]
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                assert chartkit.one(self.docs, "PersistentVolumeClaim", claim["claimName"])
                name = self._claim_volume(claim["claimName"], fs_group)
                ro = read_only or bool(claim.get("readOnly"))
                args += ["-v", f"{name}:{path}{':ro' if ro else ''}"]
            elif "secret" in volume or "configMap" in volume:
                # Kubernetes mounts Secret and ConfigMap volumes read-only whatever the mount says.
                args += ["-v", f"{self._files_volume(pod, volume, fs_group)}:{path}:ro"]
            else:
                raise AssertionError(f"{pod.name}: volume type of {volume} is not handled")
        return args

    # -- security and resources

    @staticmethod
    def user(pod: Pod, container: dict[str, Any]) -> tuple[int, int]:
        pod_ctx, ctx = pod.spec.get("securityContext", {}), container.get("securityContext", {})
        uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        gid = ctx.get("runAsGroup", pod_ctx.get("runAsGroup", 0))
        assert uid is not None, f"{pod.name}: no runAsUser (the image's user would run)"
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            assert uid != 0, f"{pod.name}: runAsNonRoot with runAsUser 0: the kubelet refuses to start it"
        return int(uid), int(gid)

    def security(self, pod: Pod, container: dict[str, Any]) -> list[str]:
        ctx = container.get("securityContext", {})
        uid, gid = self.user(pod, container)
        args = ["--user", f"{uid}:{gid}"]
        fs_group = pod.spec.get("securityContext", {}).get("fsGroup")
        if fs_group is not None:
            args += ["--group-add", str(fs_group)]
        if ctx.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if ctx.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        assert not ctx.get("privileged"), f"{pod.name}: privileged"
        for cap in ctx.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", cap]
        for cap in ctx.get("capabilities", {}).get("add", []):
            args += ["--cap-add", cap]
        for scope in (ctx, pod.spec.get("securityContext", {})):
            profile = scope.get("seccompProfile", {}).get("type")
            assert profile in (None, "RuntimeDefault"), f"{pod.name}: seccompProfile {profile}"
        return args

    @staticmethod
    def resources(container: dict[str, Any]) -> list[str]:
        res = container.get("resources", {})
        limits, requests = res.get("limits", {}), res.get("requests", {})
        args = []
        if "cpu" in limits:
            args += ["--cpus", f"{cpu_cores(limits['cpu']):g}"]
        if "memory" in limits:
            memory = str(quantity_bytes(limits["memory"]))
            args += ["--memory", memory, "--memory-swap", memory]
        if "cpu" in requests:
            args += ["--cpu-shares", str(max(2, int(cpu_cores(requests["cpu"]) * 1024)))]
        if "memory" in requests:
            args += ["--memory-reservation", str(quantity_bytes(requests["memory"]))]
        return args

    # -- networking

    def aliases(self, pod: Pod) -> list[str]:
        """Service DNS names (short, .ns, .ns.svc, .ns.svc.cluster.local) of the Services selecting this pod."""
        names: list[str] = []
        ports = {p.get("name"): p["containerPort"] for c in pod.spec["containers"] for p in c.get("ports", [])}
        for service in chartkit.of_kind(self.docs, "Service"):
            selector = service["spec"].get("selector")
            if not selector or not chartkit.selector_matches({"matchLabels": selector}, pod.labels):
                continue
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                target = ports.get(target, target) if isinstance(target, str) else target
                assert target == port["port"], f"Service {service['metadata']['name']}: port {port['port']} -> " \
                                                f"{target}: Docker aliases cannot map ports"
            svc = service["metadata"]["name"]
            names += [svc, f"{svc}.{self.namespace}", f"{svc}.{self.namespace}.svc",
                      f"{svc}.{self.namespace}.svc.cluster.local"]
        service_name = pod.workload["spec"].get("serviceName")
        if pod.kind == "StatefulSet" and service_name:
            names += [f"{pod.name}.{service_name}", f"{pod.name}.{service_name}.{self.namespace}.svc"]
        return names

    # -- running

    def run_args(self, pod: Pod) -> list[str]:
        spec = pod.spec
        assert not spec.get("initContainers"), "init containers are not handled"
        assert len(spec["containers"]) == 1, "one container a pod is handled"
        container = spec["containers"][0]
        for port in container.get("ports", []):
            assert port.get("protocol", "TCP") == "TCP", port
        env_file = self.workdir / "env" / f"{pod.name}.env"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env(pod, container).items()))
        command = [*container.get("command", []), *container.get("args", [])]
        assert container.get("command"), f"{pod.name}: no command (the image's entrypoint would run)"
        restart = {"Always": "unless-stopped", "OnFailure": "on-failure", "Never": "no"}[spec.get("restartPolicy",
                                                                                                   "Always")]
        labels = {**pod.labels, **pod.template.get("metadata", {}).get("annotations", {})}
        args = ["run", "-d", "--name", self.container_name(pod), "--hostname", spec.get("hostname", pod.name)[:63],
                "--label", self.label, "--network", self.network, "--restart", restart,
                "--stop-timeout", str(spec.get("terminationGracePeriodSeconds", 30)), "--no-healthcheck",
                "--env-file", str(env_file)]
        for alias in self.aliases(pod):
            args += ["--network-alias", alias]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        args += self.security(pod, container) + self.resources(container) + self.mounts(pod, container)
        return [*args, "--entrypoint", command[0], self.image, *command[1:]]

    def container_name(self, pod: Pod) -> str:
        return f"{self.stack}-{pod.name}"[:120]

    def start(self, pod: Pod) -> str:
        args = self.run_args(pod)
        (self.workdir / "runs.txt").open("a").write(f"docker {shlex.join(args)}\n")
        docker(*args)
        self.containers[pod.name] = self.container_name(pod)
        return self.containers[pod.name]

    def start_prober(self) -> None:
        """A container on the network that runs the kubelet's httpGet and tcpSocket probes against pod IPs."""
        self.prober = f"{self.stack}-prober"
        docker("run", "-d", "--name", self.prober, "--label", self.label, "--network", self.network,
               *dockerkit.HARDENED, "--entrypoint", "sleep", self.image, "infinity")

    # -- probes

    def pod_ip(self, pod: Pod) -> str:
        info = dockerkit.inspect(self.containers[pod.name])
        return str(info["NetworkSettings"]["Networks"][self.network]["IPAddress"])

    def probe(self, pod: Pod, probe: dict[str, Any]) -> tuple[bool, str]:
        """One probe as the kubelet runs it: (passed, what it saw)."""
        timeout = int(probe.get("timeoutSeconds", 1))
        container = pod.spec["containers"][0]
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if "exec" in probe:
            proc = docker("exec", self.containers[pod.name], *probe["exec"]["command"], check=False,
                          timeout=timeout + 30)
            return proc.returncode == 0, f"exit {proc.returncode}: {(proc.stdout + proc.stderr)[-300:]}"
        action = probe.get("httpGet") or probe.get("tcpSocket")
        assert action is not None, f"probe kind of {probe} is not handled"
        port = ports.get(action["port"], action["port"]) if isinstance(action["port"], str) else action["port"]
        assert isinstance(port, int), f"{pod.name}: probe port {action['port']!r} names no container port"
        host = action.get("host") or self.pod_ip(pod)
        if "tcpSocket" in probe:
            code = f"import socket; socket.create_connection(({host!r}, {port}), timeout={timeout}).close()"
        else:
            scheme = action.get("scheme", "HTTP").lower()
            url = f"{scheme}://{host}:{port}{action.get('path', '/')}"
            code = PROBE_HTTP.format(url=url, timeout=timeout,
                                     headers={h["name"]: h["value"] for h in action.get("httpHeaders", [])})
        proc = docker("exec", self.prober, "python3", "-c", code, check=False, timeout=timeout + 30)
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-300:]

    def wait_probe(self, pod: Pod, kind: str, deadline: float | None = None) -> float:
        """Run a probe every periodSeconds until it passes; the startup probe gives up after failureThreshold
        failures, as the kubelet does (it would then kill the container). Returns the seconds it took."""
        probe = pod.spec["containers"][0].get(kind)
        assert probe is not None, f"{pod.name} has no {kind}"
        started = time.monotonic()
        time.sleep(probe.get("initialDelaySeconds", 0))
        period = float(probe.get("periodSeconds", 10))
        failures, limit = 0, int(probe.get("failureThreshold", 3))
        while True:
            passed, seen = self.probe(pod, probe)
            if passed:
                return time.monotonic() - started
            failures += 1
            out_of_time = deadline is not None and time.monotonic() > deadline
            if (kind == "startupProbe" and failures >= limit) or out_of_time:
                raise AssertionError(f"{pod.name}: {kind} failed {failures} times over "
                                     f"{time.monotonic() - started:.0f} s; last: {seen}\n"
                                     f"{dockerkit.logs(self.containers[pod.name], 30)}")
            if not dockerkit.running(self.containers[pod.name]):
                raise AssertionError(f"{pod.name} exited while its {kind} waited: "
                                     f"{dockerkit.logs(self.containers[pod.name], 40)}")
            time.sleep(period)


PROBE_HTTP = """
import sys, urllib.request, urllib.error
request = urllib.request.Request({url!r}, headers={headers!r})
try:
    status = urllib.request.urlopen(request, timeout={timeout}).status
except urllib.error.HTTPError as exc:
    status = exc.code
print(status)
sys.exit(0 if 200 <= status < 400 else 1)
"""


def _chown(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
