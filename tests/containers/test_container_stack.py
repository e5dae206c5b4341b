"""The whole system as containers (docker/local.sh, as `make local-up` runs it), end to end.

Broker (its own image), producer, trainer and evaluator (the app image) on a private network; one named
volume, read-write in the trainer and read-only in the evaluator; every container --read-only,
--user 10001:10001, --cap-drop ALL with a tmpfs /tmp; configuration only by STREAMTRAIN_* env files.
The story, run once for the module:
  1. the producer streams the breast-cancer set 4 times at a bounded rate;
  2. mid-stream the trainer gets `docker stop` (SIGTERM): it must checkpoint and exit 0 in the grace period;
  3. `docker start` resumes it from the checkpoint on the volume; the stream completes;
  4. counts, ledger, model versions (seen from the evaluator container) and the evaluator's /metrics
     (fetched over the network from another container) are checked; then the stack is torn down.
Tear-down (docker/local.sh down) runs even when the story fails, and leaving anything behind fails.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.containers import dockerkit
from tests.containers.conftest import Images
from tests.containers.dockerkit import REPO, docker
from tests.support.ledger import check_exactly_once

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

# Same thresholds as the pipeline test (tests/integration/test_pipeline.py, which says how they were measured):
# the final version, scored in a container of the image on all 569 rows of the breast-cancer set.
ACCURACY_THRESHOLD = 0.90
AUC_THRESHOLD = 0.95
PASSES = 4
RECORDS = 569 * PASSES  # load_breast_cancer() has 569 rows
RATE = 40  # records/s: about 57 s of stream, so even a slow start stops the trainer mid-stream
STOP_AFTER_TRAINED = 200
GRACE_SECONDS = 25  # STREAMTRAIN_STOP_GRACE_SECONDS, as the chart sets it
TRAIN_TOPIC, TEST_TOPIC = "streamtrain.train", "streamtrain.test"

ENV_FILES = {
    "common": {
        "STREAMTRAIN_BOOTSTRAP_SERVERS": "broker:9092",
        "STREAMTRAIN_LOG_FORMAT": "json",
        "STREAMTRAIN_LOG_LEVEL": "INFO",
        "STREAMTRAIN_HTTP_HOST": "0.0.0.0",
    },
    "producer": {
        "STREAMTRAIN_HTTP_PORT": "9101",
        "STREAMTRAIN_SOURCE": "breast-cancer",
        "STREAMTRAIN_PASSES": str(PASSES),
        "STREAMTRAIN_RATE": str(RATE),
        "STREAMTRAIN_TEST_FRACTION": "0.2",
        "STREAMTRAIN_SEED": "7",
        "STREAMTRAIN_SUMMARY_FILE": "/out/producer.json",
    },
    "trainer": {
        "STREAMTRAIN_HTTP_PORT": "9102",
        "STREAMTRAIN_MODEL_DIR": "/data/models",
        "STREAMTRAIN_CHECKPOINT_DIR": "/data/checkpoints",
        "STREAMTRAIN_BATCH_SIZE": "32",
        "STREAMTRAIN_BATCH_MAX_WAIT_MS": "100",
        "STREAMTRAIN_PUBLISH_EVERY_SECONDS": "1",
        "STREAMTRAIN_CHECKPOINT_EVERY_SECONDS": "1",
        "STREAMTRAIN_STOP_GRACE_SECONDS": str(GRACE_SECONDS),
    },
    "evaluator": {
        "STREAMTRAIN_HTTP_PORT": "9103",
        "STREAMTRAIN_MODEL_DIR": "/data/models",
        "STREAMTRAIN_REPORT_DIR": "/var/lib/streamtrain/reports",
        "STREAMTRAIN_POLL_SECONDS": "1",
        "STREAMTRAIN_WINDOW": "200",
        "STREAMTRAIN_BATCH_SIZE": "64",
        "STREAMTRAIN_BATCH_MAX_WAIT_MS": "100",
        "STREAMTRAIN_SESSION_TIMEOUT_MS": "6000",
        "STREAMTRAIN_PLOT_EVERY_SECONDS": "2",
    },
}

# Run inside the evaluator container (volume mounted read-only): what it can see of the model store
# and the trainer's newest checkpoint, through the project's own readers.
VOLUME_VIEW = r"""
import json
from pathlib import Path
from streamtrain.store import checkpoint, model_store
base = Path("/data/models")
versions = []
for number in model_store.version_numbers(base, "streamtrain"):
    manifest = model_store.verify(model_store.model_root(base, "streamtrain") / str(number))
    versions.append({"version": number, "records_trained": manifest.get("records_trained")})
print(json.dumps({"versions": versions, "state": checkpoint.read_latest_state(Path("/data/checkpoints"))}))
"""

# Run in a helper container on the stack network, with tests/support mounted: what the broker holds.
PARTITION_ENDS = r"""
import json, sys
sys.path.insert(0, "/support")
from kafka import partition_ends
print(json.dumps({t: partition_ends("broker:9092", t) for t in sys.argv[1:]}))
"""

# Run in a helper container with the model volume (read-only) and tests/support mounted: the final version's
# quality on the whole breast-cancer set, scored by the image's own TensorFlow.
FINAL_QUALITY = r"""
import dataclasses, json, sys
from pathlib import Path
sys.path.insert(0, "/support")
from quality import newest_version_quality
from sklearn.datasets import load_breast_cancer
data = load_breast_cancer()
print(json.dumps(dataclasses.asdict(newest_version_quality(Path("/data/models"), data.data, data.target))))
"""

REPORT_SIZES = r"""
import json, os
d = os.environ["STREAMTRAIN_REPORT_DIR"]
print(json.dumps({name: os.path.getsize(os.path.join(d, name)) for name in os.listdir(d)}))
"""

FETCH = r"""
import sys, urllib.request
for url in sys.argv[1:]:
    print(urllib.request.urlopen(url, timeout=10).read().decode())
    print("\0")
"""


@dataclass
class Story:
    stack: str
    images: Images
    names: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def _container(stack: str, component: str) -> str:
    return f"{stack}-{component}"


def _helper(story: Story, *args: str, mounts: tuple[str, ...] = (), timeout: float = 180) -> str:
    """Run python3 in a throw-away hardened container on the stack's network; return its stdout."""
    volume_args = [arg for mount in mounts for arg in ("-v", mount)]
    return docker("run", "--rm", "--label", f"{dockerkit.STACK_LABEL}={story.stack}",
                  "--network", f"{story.stack}-net", "--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
                  "--tmpfs", "/tmp:rw,mode=1777", *volume_args, "--entrypoint", "python3", story.images.app,
                  *args, timeout=timeout).stdout


def _volume_view(story: Story) -> dict[str, Any]:
    proc = docker("exec", story.names["evaluator"], "python3", "-c", VOLUME_VIEW, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _diagnostics(story: Story) -> str:
    parts = []
    for component, name in story.names.items():
        parts.append(f"--- {component} ({'running' if dockerkit.running(name) else 'stopped'}):\n"
                     f"{dockerkit.logs(name, 25)}")
    return "\n".join(parts)


def _stop(story: Story, component: str) -> tuple[int, float]:
    started = time.monotonic()
    docker("stop", "-t", "40", story.names[component], timeout=90)
    return dockerkit.exit_code(story.names[component]), time.monotonic() - started


def _run_story(story: Story, env_dir: Path) -> None:
    names, facts = story.names, story.facts
    app = story.images.app
    status = dockerkit.status

    # Somewhere writable for the producer's summary file, owned by the image's user.
    out_volume = f"{story.stack}-out"
    docker("volume", "create", "--label", f"{dockerkit.STACK_LABEL}={story.stack}", out_volume)
    docker("run", "--rm", "--user", "0", "-v", f"{out_volume}:/out", "--entrypoint", "chown", app,
           "10001:10001", "/out")

    dockerkit.script("local.sh", "up", env={
        "STACK": story.stack, "IMAGE_TAG": story.images.tag, "LOCAL_ENV_DIR": str(env_dir),
        "PUBLISH_PORTS": "0", "PARTITIONS": "2", "LOCAL_PRODUCER_ARGS": f"-v {out_volume}:/out",
    }, log=env_dir / "local-up.log", timeout=300)
    for component in ("broker", "producer", "trainer", "evaluator"):
        names[component] = _container(story.stack, component)
    facts["hardening"] = {c: dockerkit.inspect(names[c]) for c in ("broker", "producer", "trainer", "evaluator")}
    facts["uids"] = {c: docker("exec", names[c], "id", "-u").stdout.strip() for c in ("trainer", "evaluator")}

    # Mid-stream: the trainer has trained some records and the producer is still sending.
    dockerkit.wait_for(f"the trainer to train {STOP_AFTER_TRAINED} records",
                       lambda: (status(names["trainer"], 9102) or {}).get("records_trained", 0)
                       >= STOP_AFTER_TRAINED, 240, on_timeout=lambda: _diagnostics(story))
    producing = status(names["producer"], 9101)
    facts["produced_at_stop"] = sum(producing["produced"].values()) if producing else None
    facts["first_stop"] = _stop(story, "trainer")
    facts["trainer_logs_first_run"] = dockerkit.logs(names["trainer"], 200)
    facts["state_at_stop"] = _volume_view(story)["state"]

    docker("start", names["trainer"])
    dockerkit.wait_for("the producer to finish", lambda: not dockerkit.running(names["producer"]), 240,
                       on_timeout=lambda: _diagnostics(story))
    facts["producer_exit"] = dockerkit.exit_code(names["producer"])
    facts["producer_summary"] = json.loads(docker(
        "run", "--rm", "-v", f"{out_volume}:/out:ro", "--entrypoint", "cat", app, "/out/producer.json").stdout)
    n_train = facts["producer_summary"]["produced"]["train"]
    n_test = facts["producer_summary"]["produced"]["test"]

    def trained_all() -> dict[str, Any] | None:
        s = status(names["trainer"], 9102)
        return s if s and s["records_trained"] + s["records_dead_lettered"] >= n_train else None

    facts["trainer_status"] = dockerkit.wait_for("the trainer to train every record", trained_all, 240,
                                                 on_timeout=lambda: _diagnostics(story))
    facts["trainer_logs_second_run"] = dockerkit.logs(names["trainer"], 400)
    facts["final_stop"] = _stop(story, "trainer")  # publishes the last version and checkpoints
    view = _volume_view(story)
    last_version = max(v["version"] for v in view["versions"])

    def evaluated_all() -> dict[str, Any] | None:
        s = status(names["evaluator"], 9103)
        done = s and s["records_evaluated"] + s["records_dead_lettered"] >= n_test
        return s if done and s["model_version"] == last_version else None

    dockerkit.wait_for("the evaluator to score every test record with the last version", evaluated_all, 240,
                       on_timeout=lambda: _diagnostics(story))
    metrics, evaluator_status = _helper(story, "-c", FETCH, "http://evaluator:9103/metrics",
                                        "http://evaluator:9103/status").split("\0")[:2]
    facts["metrics"], facts["evaluator_status"] = metrics, json.loads(evaluator_status)
    facts["volume_view"] = _volume_view(story)
    facts["final_quality"] = json.loads(_helper(story, "-c", FINAL_QUALITY, mounts=(
        f"{story.stack}-data:/data:ro", f"{REPO / 'tests' / 'support'}:/support:ro")).strip().splitlines()[-1])
    facts["evaluator_writes"] = {
        path: docker("exec", names["evaluator"], "touch", path, check=False).returncode
        for path in ("/data/models/probe", "/data/checkpoints/probe", "/opt/probe", "/tmp/probe")
    }
    facts["health"] = {c: dockerkit.health(names[c]) for c in ("broker", "evaluator")}
    facts["reports"] = docker("exec", names["evaluator"], "python3", "-c", REPORT_SIZES).stdout
    facts["partition_ends"] = {topic: {int(p): end for p, end in ends.items()} for topic, ends in json.loads(
        _helper(story, "-c", PARTITION_ENDS, TRAIN_TOPIC, TEST_TOPIC,
                mounts=(f"{REPO / 'tests' / 'support'}:/support:ro",))).items()}
    facts["evaluator_stop"] = _stop(story, "evaluator")


def _save_logs(story: Story) -> None:
    """Keep every container's full log in .artifacts/containers/ (CI keeps that folder) before tear-down."""
    folder = REPO / ".artifacts" / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    for component in ("broker", "producer", "trainer", "evaluator"):
        name = _container(story.stack, component)
        proc = docker("logs", name, check=False, timeout=60)
        (folder / f"{name}.log").write_text(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def story(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    stack = f"st-test-{uuid.uuid4().hex[:8]}"
    env_dir = tmp_path_factory.mktemp("local-env")
    for name, values in ENV_FILES.items():
        (env_dir / f"{name}.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    told = Story(stack, images)
    error: BaseException | None = None
    try:
        _run_story(told, env_dir)
    except BaseException as exc:  # keep it for after the tear-down
        error = exc
        _save_logs(told)
    finally:
        try:
            dockerkit.script("local.sh", "down", env={"STACK": stack, "IMAGE_TAG": images.tag},
                             log=env_dir / "local-down.log", timeout=300)
        except Exception as exc:
            error = error or exc
        left = dockerkit.leftovers(stack)
    if error is not None:
        raise error
    assert not left, f"tear-down left these behind: {left}"
    yield told


def test_containers_run_hardened_as_the_chart_runs_them(story: Story) -> None:
    for component, info in story.facts["hardening"].items():
        host = info["HostConfig"]
        assert host["ReadonlyRootfs"] is True, component
        assert host["CapDrop"] == ["ALL"] or "ALL" in host["CapDrop"], component
        assert info["Config"]["User"] == "10001:10001", component
        assert "/tmp" in host["Tmpfs"], component
        assert info["HostConfig"]["NetworkMode"] == f"{story.stack}-net", component
    mounts = {c: {m["Destination"]: m for m in story.facts["hardening"][c]["Mounts"]}
              for c in ("trainer", "evaluator")}
    assert mounts["trainer"]["/data"]["RW"] is True and mounts["trainer"]["/data"]["Type"] == "volume"
    assert mounts["evaluator"]["/data"]["RW"] is False
    assert mounts["trainer"]["/data"]["Name"] == mounts["evaluator"]["/data"]["Name"] == f"{story.stack}-data"
    assert story.facts["uids"] == {"trainer": "10001", "evaluator": "10001"}
    # The evaluator can write only its tmpfs: the volume is read-only, and so is the image.
    assert story.facts["evaluator_writes"] == {"/data/models/probe": 1, "/data/checkpoints/probe": 1,
                                               "/opt/probe": 1, "/tmp/probe": 0}
    assert story.facts["health"] == {"broker": "healthy", "evaluator": "healthy"}
    # ...and its report directory (a tmpfs owned by the image's user, an emptyDir in the chart).
    reports = json.loads(story.facts["reports"])
    assert reports.get("accuracy.csv", 0) > 0 and reports.get("accuracy.png", 0) > 1000, reports


def test_exact_counts_end_to_end(story: Story) -> None:
    summary = story.facts["producer_summary"]
    assert story.facts["producer_exit"] == 0
    assert summary["failed"] == 0
    n_train, n_test = summary["produced"]["train"], summary["produced"]["test"]
    assert n_train + n_test == RECORDS
    ends = story.facts["partition_ends"]
    assert sum(ends[TRAIN_TOPIC].values()) == n_train
    assert sum(ends[TEST_TOPIC].values()) == n_test
    # Train side: produced = trained + dead-lettered, exactly, with every offset covered once.
    state = story.facts["volume_view"]["state"]
    assert state["records_trained"] + state["records_dead_lettered"] == n_train
    check_exactly_once(state, {TRAIN_TOPIC: ends[TRAIN_TOPIC]})
    # Test side: the evaluator scored every record of the test topic.
    evaluated = story.facts["evaluator_status"]
    assert evaluated["records_evaluated"] + evaluated["records_dead_lettered"] == n_test
    assert story.facts["evaluator_stop"][0] == 0


def test_model_versions_visible_from_the_evaluator(story: Story) -> None:
    versions = story.facts["volume_view"]["versions"]
    assert len(versions) >= 2, versions
    trained = [v["records_trained"] for v in versions]
    assert trained == sorted(trained), versions  # a lineage: later versions saw more records
    assert len(story.facts["evaluator_status"]["versions_loaded"]) >= 2


def test_evaluator_reports_accuracy_and_the_final_version_learnt(story: Story) -> None:
    metrics = story.facts["metrics"]
    match = re.search(r"^streamtrain_evaluator_accuracy ([0-9.eE+-]+)$", metrics, re.MULTILINE)
    assert match, metrics[:2000]
    # The live window's figure depends on which version scored which record: it is reported, not judged.
    assert 0 <= float(match.group(1)) <= 1 and story.facts["evaluator_status"]["accuracy"] is not None
    quality = story.facts["final_quality"]
    last = max(v["version"] for v in story.facts["volume_view"]["versions"])
    assert quality["version"] == last, quality
    assert quality["accuracy"] >= ACCURACY_THRESHOLD and quality["auc"] >= AUC_THRESHOLD, quality


def test_trainer_stop_mid_stream_then_resume_keeps_the_ledger(story: Story) -> None:
    exit_code, seconds = story.facts["first_stop"]
    # 0, not 137: it finished on SIGTERM by itself, before `docker stop -t 40` would have killed it.
    assert exit_code == 0, f"exit {exit_code} after {seconds:.1f} s\n" + story.facts["trainer_logs_first_run"][-3000:]
    n_train = story.facts["producer_summary"]["produced"]["train"]
    # It really was mid-stream: the producer had not sent everything, the trainer not trained everything.
    assert story.facts["produced_at_stop"] is not None and story.facts["produced_at_stop"] < RECORDS
    at_stop = story.facts["state_at_stop"]
    assert STOP_AFTER_TRAINED <= at_stop["records_trained"] < n_train
    check_exactly_once(at_stop)  # the checkpoint written on SIGTERM is consistent on its own
    assert "resuming from checkpoint" in story.facts["trainer_logs_second_run"]
    # Resumed, not restarted: what was trained before the stop is a prefix of the final ledger, and the
    # final ledger covers every offset exactly once (test_exact_counts_end_to_end checks it against the
    # broker) with no overlap.
    final = story.facts["volume_view"]["state"]
    assert final["records_trained"] >= at_stop["records_trained"]
    assert not final.get("overlaps"), final.get("overlaps")
    for partition, ranges in at_stop["ledger"].get(TRAIN_TOPIC, {}).items():
        end = max(r[1] for r in ranges)
        covered = sum(min(r[1], end) - r[0] for r in final["ledger"][TRAIN_TOPIC][partition] if r[0] < end)
        assert covered == end, (partition, ranges, final["ledger"][TRAIN_TOPIC][partition])
    assert story.facts["final_stop"][0] == 0
