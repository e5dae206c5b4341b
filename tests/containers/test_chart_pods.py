"""The chart's rendered pods run as real containers, end to end (podkit.py says how each field is honoured).

For the default values, the kind values (k8s/streamtrain-kind-values.yaml) and the kind values with mutual TLS,
each with only what a run here needs on top (the image the container tests build, a producer rate that keeps the
bounded stream short; see RUNS):
- the Kafka side Strimzi would provide stands in on one Docker network: tansu behind a front that speaks TLS with
  a throwaway cluster CA and authenticates SCRAM-SHA-512 or mutual TLS as the rendered listener says, under the
  bootstrap and broker host names Strimzi's services have; the Secrets shaped as the operators make them;
- every pod of the rendered Deployments, StatefulSets and Jobs runs with its spec's command, env, volumes,
  security context and limits; its startup, liveness and readiness probes are run as the kubelet runs them;
- the pipeline is checked with exact counts: produced = trained + dead-lettered (the checkpoint's ledger covers
  every offset once), the test topic scored, versions published, a REST predict answered through the
  predictor's Service name and input records scored into the predictions topic;
- every field Docker cannot honour is printed, and must be one podkit lists with its reason.
The runs go two at a time, on networks of their own (they share nothing), to keep within the suite's time.
Everything is removed afterwards, whatever happened, and anything left behind fails the test.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.containers import dockerkit, podkit
from tests.containers.conftest import Images
from tests.containers.dockerkit import REPO, docker
from tests.containers.podkit import Kubelet, Pod, Strimzi, chartkit
from tests.support.ledger import check_exactly_once

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

# Each run: the value set it starts from and what it adds on top: the image built here (make_run), and a producer
# rate that keeps the bounded stream under a minute (the producer's probes need it running for a while: at full
# speed it would be gone in seconds). Both value sets authenticate with SCRAM-SHA-512; the mtls run takes the
# kind values to mutual TLS (the KafkaUser Secrets' user.crt/user.key, the front's client CA), and sets a
# storage class, so that the PVC's storageClassName is rendered and listed as not honoured.
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("default", {"producer": {"rate": 500}}),  # 20,000 SUSY-like records in about 40 s
    "kind": ("kind", {"producer": {"rate": 60}}),  # the breast-cancer set 4 times (2,276 records) in about 40 s
    "mtls": ("kind", {"producer": {"rate": 60}, "kafka": {"listener": {"authentication": "tls"}},
                      "persistence": {"storageClass": "standard"}}),
}
PARALLEL_RUNS = 2
INPUTS = 40  # input records the predictor must score into the predictions topic
WIDTH = {"breast-cancer": 30, "susy": 18}
READY_WITHIN = 420  # s: the predictor is Ready only once the evaluator promoted a version

# Run in a helper container of the app image with tests/ and the test's own Kafka credentials mounted.
HELPER = r"""
import json, sys
sys.path.insert(0, "/work")
import numpy as np
from tests.support.kafka import partition_ends, read_all
from confluent_kafka import Producer
conf, command, args = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
if command == "ends":
    print(json.dumps({t: partition_ends(conf, t) for t in args}))
elif command == "inputs":
    topic, n, width = args[0], int(args[1]), int(args[2])
    producer = Producer(conf)
    rows = np.random.default_rng(3).normal(size=(n, width))
    for i, row in enumerate(rows):
        producer.produce(topic, key=f"in-{i}".encode(), value=",".join(f"{v:.6f}" for v in row).encode())
    assert producer.flush(60) == 0
    print(json.dumps(n))
elif command == "predictions":
    read = read_all({**conf, "isolation.level": "read_committed"}, args[0], idle=3)
    print(json.dumps([m.key().decode() for m in read]))
"""

# Run in a container with the trainer's volume mounted read-only: its versions and newest checkpoint.
VOLUME_VIEW = r"""
import json, sys
from pathlib import Path
from streamtrain.store import checkpoint, model_store
models, checkpoints, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
versions = [n for n in model_store.version_numbers(models, name)]
for n in versions:
    model_store.verify(model_store.model_root(models, name) / str(n))
print(json.dumps({"versions": versions, "state": checkpoint.read_latest_state(checkpoints)}))
"""

PREDICT = r"""
import json, sys, urllib.request
url, width = sys.argv[1], int(sys.argv[2])
body = json.dumps({"instances": [[0.1] * width, [0.5] * width]}).encode()
request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(request, timeout=30).read().decode())
"""


@dataclass
class Run:
    """One value set's release, run as containers, and what was seen."""

    name: str
    values: dict[str, Any]
    docs: list[dict[str, Any]]
    kubelet: Kubelet
    pods: list[Pod]
    facts: dict[str, Any] = field(default_factory=dict)
    fields: podkit.Fields = field(default_factory=podkit.Fields)

    @property
    def strimzi(self) -> Strimzi:
        return self.kubelet.strimzi

    def pod(self, component: str) -> Pod:
        found = [p for p in self.pods if p.component == component]
        assert len(found) == 1, f"{component}: {len(found)} pods"
        return found[0]

    def env(self, component: str) -> dict[str, str]:
        pod = self.pod(component)
        return self.kubelet.env(pod, pod.spec["containers"][0])

    def container(self, component: str) -> str:
        return self.kubelet.containers[self.pod(component).name]


# ---- Strimzi's part -------------------------------------------------------------------------------------------

def start_kafka(run: Run, images: Images) -> None:
    """tansu, the authenticating front under Strimzi's service names, and the rendered KafkaTopics."""
    kubelet, listener = run.kubelet, run.strimzi.listener
    stack = kubelet.stack
    docker("network", "create", "--label", kubelet.label, kubelet.network)
    docker("run", "-d", "--name", f"{stack}-tansu", "--label", kubelet.label, "--network", kubelet.network,
           "--network-alias", "tansu", *dockerkit.HARDENED, images.broker,
           "--advertised-listener-url", f"tcp://{listener.broker_host}:{listener.port}")
    pki = run.strimzi.pki
    for path in pki.iterdir():
        path.chmod(0o644)  # throwaway keys, read by the front's unprivileged user
    front = ["--listen", f"0.0.0.0:{listener.port}", "--target", f"tansu:{podkit.BROKER_PORT}"]
    if listener.tls:
        front += ["--cert", "/pki/broker.crt", "--key", "/pki/broker.key"]
    if listener.authentication == "tls":
        front += ["--client-ca", "/pki/clients-ca.crt", "--tls-users", ",".join([*run.strimzi.users,
                                                                                   podkit.TEST_ADMIN])]
    elif listener.authentication == "scram-sha-512":
        (pki / "scram-users.json").write_text(json.dumps(run.strimzi.passwords))
        (pki / "scram-users.json").chmod(0o644)
        front += ["--scram-users", "/pki/scram-users.json"]
    short = listener.bootstrap_host.split(".")[0]
    aliases = [short, listener.bootstrap_host.rsplit(".", 1)[0], listener.bootstrap_host, listener.broker_host]
    docker("run", "-d", "--name", f"{stack}-kafka-front", "--label", kubelet.label, "--network", kubelet.network,
           *[arg for alias in aliases for arg in ("--network-alias", alias)], *dockerkit.HARDENED,
           "-v", f"{pki}:/pki:ro", "-v", f"{podkit.FRONT_SCRIPT}:/front/strimzi_front.py:ro",
           "--entrypoint", "python3", images.app, "/front/strimzi_front.py", *front)
    for topic in chartkit.of_kind(run.docs, "KafkaTopic"):
        create_topic(run, images, topic["spec"].get("topicName", topic["metadata"]["name"]),
                     int(topic["spec"]["partitions"]))


def create_topic(run: Run, images: Images, name: str, partitions: int) -> None:
    """What the Topic Operator does for a KafkaTopic, with tansu's own client (retried until tansu listens)."""
    kubelet = run.kubelet

    def created() -> bool:
        return docker("run", "--rm", "--label", kubelet.label, "--network", kubelet.network, "--entrypoint",
                      "/tansu", images.broker, "topic", "create", "--broker", f"tcp://tansu:{podkit.BROKER_PORT}",
                      "--partitions", str(partitions), name, check=False, timeout=60).returncode == 0

    dockerkit.wait_for(f"topic {name} created", created, 60)


def helper(run: Run, *args: str, mounts: tuple[str, ...] = (), timeout: float = 240) -> Any:
    """python3 in a throw-away hardened container of the app image on the run's network; its last line as JSON."""
    kubelet = run.kubelet
    volume_args = [arg for mount in mounts for arg in ("-v", mount)]
    out = docker("run", "--rm", "--label", kubelet.label, "--network", kubelet.network, *dockerkit.HARDENED,
                 *volume_args, "--entrypoint", "python3", kubelet.image, *args, timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def kafka_helper(run: Run, command: str, *args: str) -> Any:
    conf = run.strimzi.client_conf("/pki")
    return helper(run, "-c", HELPER, json.dumps(conf), command, *args,
                  mounts=(f"{REPO / 'tests'}:/work/tests:ro", f"{run.strimzi.pki}:/pki:ro"))


# ---- the run --------------------------------------------------------------------------------------------------

def status(run: Run, component: str) -> dict[str, Any] | None:
    """A component's /status through its Service name, from the prober container."""
    env = run.env(component)
    service = f"{chartkit.RELEASE}-{component}.{chartkit.NAMESPACE}.svc"
    text = dockerkit.http_get(run.kubelet.prober, f"http://{service}:{env['STREAMTRAIN_HTTP_PORT']}/status")
    return json.loads(text) if text else None


def diagnostics(run: Run) -> str:
    return "\n".join(f"--- {name}:\n{dockerkit.logs(c, 25)}" for name, c in run.kubelet.containers.items())


def start_pods(run: Run) -> None:
    run.fields = podkit.classify_release(run.docs)
    run.kubelet.start_prober()
    # The producer first: its probes have to be seen while its bounded stream runs.
    for pod in sorted(run.pods, key=lambda p: p.component != "producer"):
        run.kubelet.start(pod)
    run.facts["inspect"] = {p.component: dockerkit.inspect(run.kubelet.containers[p.name]) for p in run.pods}
    # Each pod's probes on a thread of its own, as the kubelet probes pods independently: the producer's must be
    # seen before its stream ends, the predictor's readiness waits for a promoted version.
    with ThreadPoolExecutor(max_workers=len(run.pods)) as pool:
        seen = dict(zip([p.component for p in run.pods], pool.map(lambda p: probe_pod(run, p), run.pods),
                        strict=True))
    run.facts["probes"] = seen


def probe_pod(run: Run, pod: Pod) -> dict[str, float]:
    """Startup probe until it passes (within its failureThreshold), then liveness once, then readiness."""
    seen = {"startupProbe": run.kubelet.wait_probe(pod, "startupProbe")}
    seen["livenessProbe"] = run.kubelet.wait_probe(pod, "livenessProbe", deadline=time.monotonic())
    seen["readinessProbe"] = run.kubelet.wait_probe(pod, "readinessProbe", deadline=time.monotonic() + READY_WITHIN)
    return {kind: round(seconds, 1) for kind, seconds in seen.items()}


def run_pipeline(run: Run) -> None:
    facts, kubelet = run.facts, run.kubelet
    producer = run.container("producer")
    dockerkit.wait_for("the producer Job's pod to complete", lambda: not dockerkit.running(producer), 300,
                       on_timeout=lambda: diagnostics(run))
    facts["producer_exit"] = dockerkit.exit_code(producer)
    env = run.env("trainer")
    train, test = env["STREAMTRAIN_TRAIN_TOPIC"], env["STREAMTRAIN_TEST_TOPIC"]
    ends = kafka_helper(run, "ends", train, test)
    facts["ends"] = {t: {int(p): n for p, n in parts.items()} for t, parts in ends.items()}
    n_train, n_test = (sum(facts["ends"][t].values()) for t in (train, test))

    def trained_all() -> dict[str, Any] | None:
        s = status(run, "trainer")
        return s if s and s["records_trained"] + s["records_dead_lettered"] >= n_train else None

    def evaluated_all() -> dict[str, Any] | None:
        s = status(run, "evaluator")
        return s if s and s["records_evaluated"] + s["records_dead_lettered"] >= n_test else None

    dockerkit.wait_for(f"the trainer to train {n_train} records", trained_all, 300, interval=2,
                       on_timeout=lambda: diagnostics(run))
    facts["evaluator_status"] = dockerkit.wait_for(f"the evaluator to score {n_test} records", evaluated_all, 300,
                                                   interval=2, on_timeout=lambda: diagnostics(run))
    predict_via_service(run)
    stream_through_predictor(run)
    # SIGTERM as the kubelet sends it, with the pod's grace period: the trainer checkpoints and exits 0.
    trainer = run.container("trainer")
    docker("stop", trainer, timeout=120)
    facts["trainer_exit"] = dockerkit.exit_code(trainer)
    facts["volume"] = trainer_volume_view(run)
    facts["restarts"] = {c: dockerkit.inspect(name)["RestartCount"] for c, name in kubelet.containers.items()}
    facts["front_log"] = docker("logs", f"{kubelet.stack}-kafka-front", check=False).stdout


def predict_via_service(run: Run) -> None:
    env = run.env("predictor")
    service = f"{chartkit.RELEASE}-predictor.{chartkit.NAMESPACE}.svc"
    url = f"http://{service}:{env['STREAMTRAIN_HTTP_PORT']}/v1/models/{env['STREAMTRAIN_MODEL_NAME']}:predict"
    width = WIDTH[run.env("producer")["STREAMTRAIN_SOURCE"]]
    proc = docker("exec", run.kubelet.prober, "python3", "-c", PREDICT, url, str(width), timeout=120)
    run.facts["rest"] = json.loads(proc.stdout)


def stream_through_predictor(run: Run) -> None:
    env = run.env("predictor")
    width = WIDTH[run.env("producer")["STREAMTRAIN_SOURCE"]]
    kafka_helper(run, "inputs", env["STREAMTRAIN_INPUT_TOPIC"], str(INPUTS), str(width))

    def scored() -> list[str] | None:
        keys: list[str] = kafka_helper(run, "predictions", env["STREAMTRAIN_OUTPUT_TOPIC"])
        return keys if len(keys) >= INPUTS else None

    run.facts["prediction_keys"] = dockerkit.wait_for(f"{INPUTS} predictions", scored, 240, interval=3,
                                                      on_timeout=lambda: diagnostics(run))


def trainer_volume_view(run: Run) -> dict[str, Any]:
    """The trainer's model volume, mounted read-only where the trainer mounts it, read by the project's readers."""
    pod = run.pod("trainer")
    env = run.env("trainer")
    mounts = [m for m in run.facts["inspect"]["trainer"]["Mounts"]
              if m["Type"] == "volume" and env["STREAMTRAIN_MODEL_DIR"].startswith(m["Destination"] + "/")]
    assert len(mounts) == 1, mounts
    return dict(helper(run, "-c", VOLUME_VIEW, env["STREAMTRAIN_MODEL_DIR"], env["STREAMTRAIN_CHECKPOINT_DIR"],
                       env["STREAMTRAIN_MODEL_NAME"], mounts=(f"{mounts[0]['Name']}:{mounts[0]['Destination']}:ro",),
                       timeout=180)) | {"pod": pod.name}


def tear_down(run: Run) -> dict[str, list[str]]:
    label = run.kubelet.label
    ids = docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False, timeout=120)
    for kind in ("network", "volume"):
        names = docker(kind, "ls", "-q", "--filter", f"label={label}").stdout.split()
        if names:
            docker(kind, "rm", *names, check=False, timeout=60)
    return dockerkit.leftovers(run.kubelet.stack)


def save_logs(run: Run) -> None:
    folder = REPO / ".artifacts" / "chart-pods" / run.name
    folder.mkdir(parents=True, exist_ok=True)
    for name in [*run.kubelet.containers.values(), f"{run.kubelet.stack}-kafka-front", f"{run.kubelet.stack}-tansu"]:
        proc = docker("logs", name, check=False, timeout=60)
        (folder / f"{name}.log").write_text(proc.stdout + proc.stderr)


def make_run(name: str, images: Images, workdir: Path) -> Run:
    repository, tag = images.app.rsplit(":", 1)
    base, extra = RUNS[name]
    values = chartkit.deep_merge(chartkit.VALUE_SETS[base], extra)
    values = chartkit.deep_merge(values, {"image": {"repository": repository, "tag": tag}})
    docs = chartkit.render(values)
    pki = workdir / "pki"
    pki.mkdir(parents=True)
    strimzi = Strimzi.make(docs, pki)
    stack = f"st-pods-{name}-{uuid.uuid4().hex[:6]}"
    kubelet = Kubelet(stack, images.app, docs, strimzi, workdir)
    return Run(name, values, docs, kubelet, podkit.pods_of(docs))


def execute(run: Run, images: Images) -> Run:
    started = time.monotonic()
    error: BaseException | None = None
    try:
        start_kafka(run, images)
        start_pods(run)
        run_pipeline(run)
    except BaseException as exc:  # kept for after the tear-down
        error = exc
        save_logs(run)
    finally:
        left = tear_down(run)
    run.facts["seconds"] = round(time.monotonic() - started, 1)
    if error is not None:
        raise error
    assert not left, f"tear-down left these behind: {left}"
    return run


@pytest.fixture(scope="module")
def runs(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    made = {name: make_run(name, images, tmp_path_factory.mktemp(f"pods-{name}")) for name in RUNS}
    # Two at a time: three stacks starting TensorFlow at once on two cores take about 185 s of the startup probes'
    # 180 s budget (5 s x 36), so the third run starts when one of the first two ends.
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        futures = {name: pool.submit(execute, run, images) for name, run in made.items()}
        done = {name: future.result() for name, future in futures.items()}
    yield done


# ---- the verdicts ---------------------------------------------------------------------------------------------

@pytest.fixture(params=sorted(RUNS))
def run(request: pytest.FixtureRequest, runs: dict[str, Run]) -> Run:
    return runs[request.param]


def test_every_component_pod_ran_as_its_spec_says(run: Run) -> None:
    assert sorted(p.component for p in run.pods) == sorted(chartkit.COMPONENTS)
    # seccompProfile RuntimeDefault is Docker's default profile: the engine must have one.
    assert "name=seccomp" in docker("info", "--format", "{{json .SecurityOptions}}").stdout
    for pod in run.pods:
        spec, container = pod.spec, pod.spec["containers"][0]
        info = run.facts["inspect"][pod.component]
        host, config = info["HostConfig"], info["Config"]
        uid, gid = Kubelet.user(pod, container)
        assert config["Image"] == container["image"], pod.name
        assert [*config["Entrypoint"], *config["Cmd"]] == [*container["command"], *container.get("args", [])]
        assert config["User"] == f"{uid}:{gid}" and uid != 0
        assert str(spec["securityContext"]["fsGroup"]) in host["GroupAdd"]
        assert host["ReadonlyRootfs"] is container["securityContext"]["readOnlyRootFilesystem"]
        assert host["CapDrop"] == container["securityContext"]["capabilities"]["drop"]
        assert "no-new-privileges" in host["SecurityOpt"] and "seccomp=unconfined" not in host["SecurityOpt"]
        assert host["NanoCpus"] == int(podkit.cpu_cores(container["resources"]["limits"]["cpu"]) * 1e9)
        assert host["Memory"] == podkit.quantity_bytes(container["resources"]["limits"]["memory"])
        env = dict(item.split("=", 1) for item in config["Env"])
        assert {k: env[k] for k in run.env(pod.component)} == run.env(pod.component)
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        for mount in container["volumeMounts"]:
            assert mount["mountPath"] in mounts, (pod.name, mount)
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            read_only = mount.get("readOnly") or volume.get("persistentVolumeClaim", {}).get("readOnly")
            assert mounts[mount["mountPath"]]["RW"] is not bool(read_only or "secret" in volume), mount


def test_probes_pass(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():  # shown in the run's output (pytest hides what a passing test prints)
        print(f"\n{run.name} values: {run.facts['seconds']} s; probes passed after (s): {run.facts['probes']}")
    for pod in run.pods:
        assert set(run.facts["probes"][pod.component]) == {"startupProbe", "livenessProbe", "readinessProbe"}
    assert all(n == 0 for n in run.facts["restarts"].values()), run.facts["restarts"]


def test_each_component_authenticated_as_its_own_kafka_user(run: Run) -> None:
    events = [json.loads(line) for line in run.facts["front_log"].splitlines() if line.startswith("{")]
    users = {e["user"] for e in events if e["event"] == "accepted"}
    refused = [e for e in events if e["event"] == "refused"]
    listener = run.strimzi.listener
    assert listener.tls and listener.authentication in ("scram-sha-512", "tls"), listener
    listening = next(e for e in events if e["event"] == "listening")
    assert (listening["scram"], listening["mutual_tls"]) == (listener.authentication == "scram-sha-512",
                                                             listener.authentication == "tls"), listening
    assert set(run.strimzi.users) <= users, (sorted(users), run.strimzi.users)
    assert not refused, refused


def test_exact_counts_end_to_end(run: Run) -> None:
    facts = run.facts
    assert facts["producer_exit"] == 0
    env = run.env("trainer")
    train, test = env["STREAMTRAIN_TRAIN_TOPIC"], env["STREAMTRAIN_TEST_TOPIC"]
    n_train, n_test = (sum(facts["ends"][t].values()) for t in (train, test))
    assert n_train + n_test == int(run.env("producer")["STREAMTRAIN_COUNT"])
    assert facts["trainer_exit"] == 0
    state = facts["volume"]["state"]
    check_exactly_once(state, {train: facts["ends"][train]})
    evaluated = facts["evaluator_status"]
    assert evaluated["records_evaluated"] + evaluated["records_dead_lettered"] == n_test
    # Versions were published, the last on the way out with everything trained (how many before it depends on how
    # fast the machine trained the stream, so the count is not asserted).
    assert facts["volume"]["versions"] and max(facts["volume"]["versions"]) == state["last_version"], facts["volume"]
    assert evaluated["model_version"] in facts["volume"]["versions"] or evaluated["model_version"] >= 1


def test_predictor_answers_and_streams(run: Run) -> None:
    predictions = run.facts["rest"]["predictions"]
    assert len(predictions) == 2 and all(0.0 <= p[0] <= 1.0 for p in predictions), run.facts["rest"]
    keys = run.facts["prediction_keys"]
    assert sorted(keys) == sorted(f"in-{i}" for i in range(INPUTS)), keys


def test_both_listener_authentications_ran(runs: dict[str, Run]) -> None:
    """SCRAM-SHA-512 and mutual TLS each need their own Secret shape and front: both must have run."""
    assert {r.strimzi.listener.authentication for r in runs.values()} == {"scram-sha-512", "tls"}


def test_unhonoured_fields_are_the_documented_ones(runs: dict[str, Run], capsys: pytest.CaptureFixture[str]) -> None:
    unknown = set().union(*(r.fields.unknown for r in runs.values()))
    not_honoured: dict[str, str] = {}
    for r in runs.values():
        not_honoured.update(r.fields.not_honoured)
    with capsys.disabled():  # shown in the run's output (pytest hides what a passing test prints)
        print("\nNot honoured by Docker (field: why):")
        for path, why in sorted(not_honoured.items()):
            print(f"  {path}: {why}")
    assert not unknown, "fields of the rendered chart that podkit neither honours nor lists as not honoured " \
                        f"(place each in podkit.HONOURED or NOT_HONOURED): {sorted(unknown)}"
