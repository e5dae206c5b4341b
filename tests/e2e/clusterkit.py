"""Access to a deployed streamtrain release through the kubernetes Python client (and the helm CLI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kafka.strimzi.io", "v1"
T = TypeVar("T")

# Runs inside a component pod with the component's own Kafka credentials (env + mounted Secrets):
# prints {topic: {partition: high watermark}} for the topics given as arguments.
WATERMARKS = r"""
import json, os, sys
from confluent_kafka import Consumer, TopicPartition
e = os.environ
conf = {"bootstrap.servers": e["STREAMTRAIN_BOOTSTRAP_SERVERS"],
        "security.protocol": e.get("STREAMTRAIN_SECURITY_PROTOCOL", "PLAINTEXT"),
        "group.id": e.get("STREAMTRAIN_GROUP_ID", "streamtrain-e2e"), "enable.auto.commit": False}
if conf["security.protocol"].startswith("SASL"):
    conf["sasl.mechanism"] = e.get("STREAMTRAIN_SASL_MECHANISM", "SCRAM-SHA-512")
    conf["sasl.username"] = e["STREAMTRAIN_SASL_USERNAME"]
    conf["sasl.password"] = open(e["STREAMTRAIN_SASL_PASSWORD_FILE"]).read().strip()
for env, key in (("STREAMTRAIN_SSL_CA_LOCATION", "ssl.ca.location"),
                 ("STREAMTRAIN_SSL_CERTIFICATE_LOCATION", "ssl.certificate.location"),
                 ("STREAMTRAIN_SSL_KEY_LOCATION", "ssl.key.location")):
    if e.get(env):
        conf[key] = e[env]
consumer = Consumer(conf)
out = {}
for topic in sys.argv[1:]:
    meta = consumer.list_topics(topic, timeout=20).topics[topic]
    if meta.error is not None:
        raise SystemExit(f"{topic}: {meta.error}")
    out[topic] = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1]
                  for p in meta.partitions}
consumer.close()
print(json.dumps(out))
"""

# Fetches one of the component's own HTTP endpoints from inside its pod.
HTTP_GET = r"""
import os, sys, urllib.request
port = os.environ["STREAMTRAIN_HTTP_PORT"]
print(urllib.request.urlopen(f"http://127.0.0.1:{port}{sys.argv[1]}", timeout=10).read().decode())
"""

# Tries a TCP connection; prints "open" or "blocked".
CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("open")
except OSError:
    print("blocked")
"""


def launcher_argv(code: str, *args: str) -> list[str]:
    """argv running Python code with the interpreter of the image's `streamtrain` entry point."""
    launcher = 'exec $(sed -n "1s/^#!//p" "$(command -v streamtrain)") -c "$0" "$@"'
    return ["sh", "-c", launcher, code, *args]


def when(value: T, predicate: Callable[[T], bool]) -> T | None:
    """value if predicate(value) holds, else None (for wait_for probes)."""
    return value if predicate(value) else None


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 5.0) -> T:
    """Poll probe until it returns something truthy; fail naming what was awaited and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # the API or a pod can be briefly unavailable during rollouts
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


class Cluster:
    def __init__(self, context: str | None, namespace: str, release: str) -> None:
        from kubernetes import client, config

        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, context=context)
        self.context, self.namespace, self.release = context, namespace, release
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.batch = client.BatchV1Api()
        self.net = client.NetworkingV1Api()
        self.custom = client.CustomObjectsApi()
        kafkas = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "kafkas", label_selector=self.selector()
        )["items"]
        self.kafka_name = kafkas[0]["metadata"]["name"] if kafkas else f"{release}-kafka"

    # ------------------------------------------------------------ availability
    @staticmethod
    def unavailable(context: str | None, namespace: str, release: str) -> str | None:
        """Why the suite cannot run here (None when it can)."""
        try:
            from kubernetes import client, config
        except ImportError:
            return "the kubernetes Python client is not installed (pip install -e '.[dev]')"
        where = f"kube context {context!r}" if context else "the current kube context"
        try:
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, context=context)
        except Exception as exc:
            return f"no Kubernetes cluster: cannot load {where} from kubeconfig ({exc}); run `make kind-up`"
        try:
            client.VersionApi().get_code(_request_timeout=10)
        except Exception as exc:
            return f"no Kubernetes cluster reachable through {where}: {type(exc).__name__}: {exc}"
        try:
            client.ApiextensionsV1Api().read_custom_resource_definition("kafkas.kafka.strimzi.io", _request_timeout=10)
        except Exception:
            return f"the Strimzi CRDs are not installed in the cluster of {where}; run `make kind-up`"
        try:
            client.CoreV1Api().read_namespace(namespace, _request_timeout=10)
            selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=trainer"
            if not client.AppsV1Api().list_namespaced_deployment(namespace, label_selector=selector).items:
                return f"release {release!r} is not deployed in namespace {namespace!r}; run `make deploy`"
        except Exception as exc:
            return f"namespace {namespace!r} is not readable through {where}: {exc}"
        return None

    # ------------------------------------------------------------ objects
    def selector(self, component: str | None = None) -> str:
        labels = f"app.kubernetes.io/instance={self.release}"
        return labels + (f",app.kubernetes.io/component={component}" if component else "")

    def custom_objects(self, plural: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, label_selector=self.selector()
        )["items"]

    def kafka(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "kafkas", self.kafka_name)

    @staticmethod
    def ready(obj: dict[str, Any]) -> bool:
        return any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (obj.get("status") or {}).get("conditions", [])
        )

    def pods(self, component: str) -> list[Any]:
        return [
            p
            for p in self.core.list_namespaced_pod(self.namespace, label_selector=self.selector(component)).items
            if p.metadata.deletion_timestamp is None
        ]

    @staticmethod
    def pod_ready(pod: Any) -> bool:
        return pod.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])
        )

    def ready_pod(self, component: str, timeout: float = 600) -> Any:
        return wait_for(
            f"a Ready {component} pod",
            lambda: next((p for p in self.pods(component) if self.pod_ready(p)), None),
            timeout,
        )

    def gone_or_exit_code(self, name: str) -> str | int | None:
        """'gone' once the pod is deleted; a non-zero exit code if its container is seen failed; else None."""
        from kubernetes.client.exceptions import ApiException

        try:
            pod = self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return "gone"
            raise
        for status in pod.status.container_statuses or []:
            if status.state and status.state.terminated and status.state.terminated.exit_code:
                return int(status.state.terminated.exit_code)
        return None

    def producer_jobs(self) -> list[Any]:
        return self.batch.list_namespaced_job(self.namespace, label_selector=self.selector("producer")).items

    def configmap_env(self, component: str) -> dict[str, str]:
        return self.core.read_namespaced_config_map(f"{self.release}-{component}", self.namespace).data

    # ------------------------------------------------------------ exec
    def exec(self, pod: Any, argv: list[str], timeout: float = 120) -> str:
        from kubernetes.stream import stream

        name = pod if isinstance(pod, str) else pod.metadata.name
        ws = stream(
            self.core.connect_get_namespaced_pod_exec,
            name,
            self.namespace,
            command=argv,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        ws.run_forever(timeout=timeout)
        out, err = ws.read_stdout(), ws.read_stderr()
        code = ws.returncode
        ws.close()
        if code != 0:
            raise RuntimeError(f"`{' '.join(argv[:3])}...` in {name} exited {code}: {err.strip()[-2000:]}")
        return out

    def python(self, pod: Any, code: str, *args: str, timeout: float = 120) -> str:
        """Run code with the interpreter of the image's `streamtrain` entry point."""
        return self.exec(pod, launcher_argv(code, *args), timeout=timeout)

    def watermarks(self, component: str, *topics: str) -> dict[str, dict[int, int]]:
        raw = json.loads(self.python(self.ready_pod(component), WATERMARKS, *topics))
        return {t: {int(p): int(h) for p, h in parts.items()} for t, parts in raw.items()}

    def status(self, component: str, pod: Any = None) -> dict[str, Any]:
        return json.loads(self.python(pod or self.ready_pod(component), HTTP_GET, "/status"))

    def inspect(self, component: str = "trainer") -> dict[str, Any]:
        """`streamtrain inspect` in the pod: newest checkpoint state, published versions, ledger problems."""
        return json.loads(self.exec(self.ready_pod(component), ["streamtrain", "inspect"]))

    def connect(self, pod: Any, host: str, port: int) -> str:
        return self.python(pod, CONNECT, host, str(port)).strip()

    # ------------------------------------------------------------ helm
    def helm(self, *args: str, timeout: float = 900) -> str:
        helm = shutil.which("helm")
        if helm is None:
            import pytest

            pytest.skip("the helm CLI is not on PATH (needed for upgrade and uninstall)")
        argv = [helm, *args, "--namespace", self.namespace]
        if self.context:
            argv += ["--kube-context", self.context]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "HELM_NAMESPACE": self.namespace},
        )
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr}"
        return result.stdout

    def helm_values(self) -> dict[str, Any]:
        return json.loads(self.helm("get", "values", self.release, "--all", "--output", "json"))

    def helm_upgrade(self, values: dict[str, Any]) -> None:
        """helm upgrade --reuse-values with typed values (--set would turn 0.0005 into a string)."""
        chart = os.environ.get("STREAMTRAIN_CHART", str(REPO / "charts" / "streamtrain"))
        args = ["upgrade", self.release, chart, "--reuse-values"]
        for key, value in values.items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        self.helm(*args)
