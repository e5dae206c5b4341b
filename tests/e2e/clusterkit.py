"""Access to a deployed streamtrain release through the kubernetes Python client (and the helm CLI)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
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


# Runs inside a predictor pod as a client of the predictor: writes feature rows (CSV) to the input topic and reads
# the predictions of exactly those records from the output topic, read_committed (only committed transactions),
# from the output's end before the rows were written. The one argument is a JSON job: input and output topics,
# rows, consumer group, timeout in seconds, and the client's own credentials (a KafkaUser of the test's: the
# predictor's user may not write the input topic). Prints {"undelivered", "delivered": {key: [partition, offset]},
# "predictions": {key: {"value", "headers", "count"}}}.
PREDICT_IO = r"""
import json, os, sys, tempfile, time, uuid
from confluent_kafka import Consumer, Producer, TopicPartition
e, job = os.environ, json.loads(sys.argv[1])
conf = {"bootstrap.servers": e["STREAMTRAIN_BOOTSTRAP_SERVERS"],
        "security.protocol": e.get("STREAMTRAIN_SECURITY_PROTOCOL", "PLAINTEXT")}
if e.get("STREAMTRAIN_SSL_CA_LOCATION"):
    conf["ssl.ca.location"] = e["STREAMTRAIN_SSL_CA_LOCATION"]
user = job.get("user") or {}
if conf["security.protocol"].startswith("SASL"):
    conf.update({"sasl.mechanism": e.get("STREAMTRAIN_SASL_MECHANISM", "SCRAM-SHA-512"),
                 "sasl.username": user["username"], "sasl.password": user["password"]})
elif "user.crt" in user:
    folder = tempfile.mkdtemp()
    for name in ("user.crt", "user.key"):
        with open(os.path.join(folder, name), "w") as f:
            f.write(user[name])
    conf.update({"ssl.certificate.location": os.path.join(folder, "user.crt"),
                 "ssl.key.location": os.path.join(folder, "user.key")})
out = job["output"]
consumer = Consumer({**conf, "group.id": job["group"], "enable.auto.commit": False,
                     "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
meta = consumer.list_topics(out, timeout=20).topics[out]
if meta.error is not None:
    raise SystemExit(f"{out}: {meta.error}")
start = {p: consumer.get_watermark_offsets(TopicPartition(out, p), timeout=20)[1] for p in meta.partitions}
consumer.assign([TopicPartition(out, p, o) for p, o in start.items()])
run, delivered, errors = uuid.uuid4().hex[:8], {}, []
def done(err, msg):
    if err is None:
        delivered[msg.key().decode()] = [msg.partition(), msg.offset()]
    else:
        errors.append(str(err))
producer = Producer(conf)
for i, row in enumerate(job["rows"]):
    producer.produce(job["input"], key=f"e2e-{run}-{i}".encode(), value=",".join(map(repr, row)).encode(),
                     on_delivery=done)
undelivered = producer.flush(30)
predictions, deadline = {}, time.monotonic() + job["timeout"]
while len(predictions) < len(delivered) and time.monotonic() < deadline:
    for msg in consumer.consume(500, 1.0):
        key = msg.key().decode() if msg.error() is None and msg.key() is not None else None
        if key in delivered:
            seen = predictions.setdefault(key, {"value": msg.value().decode(), "count": 0,
                                                "headers": {k: v.decode() for k, v in msg.headers() or []}})
            seen["count"] += 1
consumer.close()
print(json.dumps({"undelivered": undelivered + len(errors), "errors": errors[:5], "delivered": delivered,
                  "predictions": predictions}))
"""

FORWARDING = re.compile(r"^Forwarding from 127\.0\.0\.1:(\d+) -> \d+")


def forwarded_port(line: str) -> int | None:
    """The local port of a `kubectl port-forward` output line ("Forwarding from 127.0.0.1:PORT -> REMOTE")."""
    match = FORWARDING.match(line.strip())
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def forwarding(argv: list[str], timeout: float = 60) -> Iterator[int]:
    """Run a port-forward command (kubectl port-forward ... :REMOTE); yield the local port once it forwards."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True)
    reader.start()
    try:
        deadline, said, port = time.monotonic() + timeout, [], None
        command = " ".join(argv[:3])
        while port is None:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if not reader.is_alive() and lines.empty():  # all it said is read: it has exited
                    process.wait(10)
                    raise AssertionError(f"`{command}` exited {process.returncode}: {said}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"`{command}` did not forward within {timeout:.0f}s: {said}") from None
                continue
            said.append(line.strip())
            port = forwarded_port(line)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def http_json(url: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    """(status, decoded JSON body) of a GET, or of a POST of `body` as JSON; error statuses are returned too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


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


def claims(pod: Any) -> list[str]:
    """Names of the PersistentVolumeClaims a pod (a kubernetes client V1Pod) mounts."""
    return [v.persistent_volume_claim.claim_name for v in pod.spec.volumes or [] if v.persistent_volume_claim]


def volume_at(pod: Any, path: str) -> Any:
    """The volume of the pod's first container that holds `path` (the longest mount path above it), or None."""
    mounts = [m for m in pod.spec.containers[0].volume_mounts or []
              if path == m.mount_path or path.startswith(m.mount_path.rstrip("/") + "/")]
    if not mounts:
        return None
    mount = max(mounts, key=lambda m: len(m.mount_path))
    return next((v for v in pod.spec.volumes or [] if v.name == mount.name), None)


def required_pod_affinity(pod: Any) -> list[Any]:
    """The pod's required pod-affinity terms (what would tie it to another pod's node)."""
    affinity = pod.spec.affinity
    if affinity is None or affinity.pod_affinity is None:
        return []
    return list(affinity.pod_affinity.required_during_scheduling_ignored_during_execution or [])


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

    def pod_now(self, pod: Any) -> Any:
        """The pod as it is now (a listed pod object is a snapshot), or None once it is gone. A pod of the same name
        with another uid is another pod: a StatefulSet's replacement keeps its predecessor's name."""
        from kubernetes.client.exceptions import ApiException

        try:
            now = self.core.read_namespaced_pod(pod.metadata.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return now if now.metadata.uid == pod.metadata.uid else None

    def gone_or_exit_code(self, pod: Any) -> str | int | None:
        """'gone' once the pod is deleted; a non-zero exit code if its container is seen failed; else None."""
        now = self.pod_now(pod)
        if now is None:
            return "gone"
        for status in now.status.container_statuses or []:
            if status.state and status.state.terminated and status.state.terminated.exit_code:
                return int(status.state.terminated.exit_code)
        return None

    def workload_generations(self, component: str) -> dict[str, int]:
        """{kind/name: metadata.generation} of the component's Deployments and StatefulSets. The API server raises
        the generation on every change of the spec, pod template included, and only then: an unchanged generation
        means that nothing rolls, whatever pods a surge happens to leave running at the time."""
        found = {}
        selector = self.selector(component)
        for kind, listing in (("Deployment", self.apps.list_namespaced_deployment),
                              ("StatefulSet", self.apps.list_namespaced_stateful_set)):
            for workload in listing(self.namespace, label_selector=selector).items:
                found[f"{kind}/{workload.metadata.name}"] = int(workload.metadata.generation)
        return found

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

    # ------------------------------------------------------------ the predictor and the serving decisions
    def model_manifest(self, version: int, component: str = "predictor") -> dict[str, Any]:
        """manifest.json of a version in the model store, read through the component's (read-only) mount."""
        env = self.configmap_env(component)
        path = f"{env['STREAMTRAIN_MODEL_DIR']}/{env['STREAMTRAIN_MODEL_NAME']}/{version}/manifest.json"
        return json.loads(self.exec(self.ready_pod(component), ["cat", path]))

    def serving(self, component: str, *args: str) -> dict[str, Any]:
        """`streamtrain serving ARGS` in a pod of the component, with its Kafka user: its JSON answer."""
        return json.loads(self.exec(self.ready_pod(component), ["streamtrain", "serving", *args]))

    @contextlib.contextmanager
    def port_forward(self, component: str, timeout: float = 60) -> Iterator[int]:
        """`kubectl port-forward svc/<release>-<component> :<its http port>`; yields the local port."""
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            import pytest

            pytest.skip("the kubectl CLI is not on PATH (needed for port-forward)")
        port = self.configmap_env(component)["STREAMTRAIN_HTTP_PORT"]
        argv = [kubectl, "port-forward", f"svc/{self.release}-{component}", f":{port}",
                "--address", "127.0.0.1", "--namespace", self.namespace]
        if self.context:
            argv += ["--context", self.context]
        with forwarding(argv, timeout) as local:
            yield local

    def rest(self, component: str, path: str, body: Any = None) -> tuple[int, Any]:
        """An HTTP request to the component's Service through a port-forward: (status, JSON body)."""
        with self.port_forward(component) as local:
            return http_json(f"http://127.0.0.1:{local}{path}", body)

    def listener_authentication(self) -> str:
        listener = next(lst for lst in self.kafka()["spec"]["kafka"]["listeners"] if lst["name"] == "clients")
        return str((listener.get("authentication") or {}).get("type", "none"))

    @contextlib.contextmanager
    def kafka_client(self, name: str, acls: list[dict[str, Any]], timeout: float = 300) -> Iterator[dict[str, str]]:
        """A KafkaUser of the test's own with these ACLs, for the time of the block; yields its credentials
        ({} when the listener authenticates no one). Not labelled with the release: it is no part of it."""
        from kubernetes.client.exceptions import ApiException

        auth = self.listener_authentication()
        if auth == "none":
            yield {}
            return

        def delete() -> None:
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "kafkausers", name)
            except ApiException as exc:
                if exc.status != 404:
                    raise

        def get() -> dict[str, Any] | None:
            try:
                return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "kafkausers", name)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        delete()  # a leftover of an interrupted run
        wait_for(f"a leftover KafkaUser {name} to go", lambda: get() is None or None, timeout)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "KafkaUser",
            "metadata": {"name": name, "labels": {"strimzi.io/cluster": self.kafka_name,
                                                  "app.kubernetes.io/part-of": "streamtrain-e2e"}},
            "spec": {"authentication": {"type": auth}, "authorization": {"type": "simple", "acls": acls}},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "kafkausers", body)
        try:
            wait_for(f"KafkaUser {name} Ready", lambda: when(get(), lambda u: bool(u) and self.ready(u)), timeout)
            keys = ("password",) if auth == "scram-sha-512" else ("user.crt", "user.key")
            data = wait_for(
                f"the Secret of KafkaUser {name}",
                lambda: when(self.core.read_namespaced_secret(name, self.namespace).data or {},
                             lambda d: all(k in d for k in keys)),
                timeout,
            )
            yield {"username": name, **{k: base64.b64decode(data[k]).decode() for k in keys}}
        finally:
            delete()

    def predict_through_kafka(self, user: dict[str, str], rows: list[list[float]], timeout: float) -> dict[str, Any]:
        """PREDICT_IO in a predictor pod: rows into the input topic, their predictions out of the output topic."""
        env = self.configmap_env("predictor")
        job = {"input": env["STREAMTRAIN_INPUT_TOPIC"], "output": env["STREAMTRAIN_OUTPUT_TOPIC"], "rows": rows,
               "group": f"streamtrain-e2e-{int(time.time())}", "timeout": timeout, "user": user}
        return json.loads(self.python(self.ready_pod("predictor"), PREDICT_IO, json.dumps(job),
                                      timeout=timeout + 120))

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
