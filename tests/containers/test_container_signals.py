"""Signals and the volume lock, as containers.

`docker stop` of the producer: PID 1 gets SIGTERM, flushes what it queued and exits 0. Two trainers on one named
volume: the second exits 4 naming the first; a SIGKILLed holder frees the volume at once.
(The trainer's SIGTERM story, across a restart, is in test_container_stack.py.)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.containers import dockerkit
from tests.containers.conftest import Images
from tests.containers.dockerkit import HARDENED, docker
from tests.support.ledger import check_exactly_once

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]



@pytest.fixture
def network(images: Images) -> Iterator[tuple[str, str]]:
    """A private network with a broker on it; everything labelled and removed afterwards."""
    stack = f"st-sig-{uuid.uuid4().hex[:8]}"
    label = f"{dockerkit.STACK_LABEL}={stack}"
    net = f"{stack}-net"
    try:
        docker("network", "create", "--label", label, net)
        docker("run", "-d", "--name", f"{stack}-broker", "--label", label, "--network", net,
               "--network-alias", "broker", *HARDENED, images.broker,
               "--advertised-listener-url", "tcp://broker:9092")
        yield stack, net
    finally:
        for container in docker("ps", "-aq", "--filter", f"label={label}", check=False).stdout.split():
            docker("rm", "-f", container, check=False)
        docker("network", "rm", net, check=False)
        for volume in docker("volume", "ls", "-q", "--filter", f"label={label}", check=False).stdout.split():
            docker("volume", "rm", "-f", volume, check=False)
        assert not dockerkit.leftovers(stack)


ENV = ("-e", "STREAMTRAIN_BOOTSTRAP_SERVERS=broker:9092", "-e", "STREAMTRAIN_LOG_FORMAT=json")


def endless_producer(images: Images, network: tuple[str, str]) -> str:
    """The topics, then a producer container of an endless generated stream (count 0), rate-limited: only a signal
    ends it. Returns its name."""
    stack, net = network
    label = f"{dockerkit.STACK_LABEL}={stack}"
    dockerkit.wait_for("the topics", lambda: docker(
        "run", "--rm", "--label", label, "--network", net, *HARDENED, *ENV, images.app, "topics",
        "--partitions", "2", check=False).returncode == 0, 90, interval=2)
    producer = f"{stack}-producer"
    docker("run", "-d", "--name", producer, "--label", label, "--network", net, *HARDENED, *ENV,
           "-e", "STREAMTRAIN_SOURCE=susy", "-e", "STREAMTRAIN_COUNT=0", "-e", "STREAMTRAIN_RATE=2000",
           images.app, "produce")
    return producer


def test_producer_flushes_and_exits_zero_on_docker_stop(images: Images, network: tuple[str, str]) -> None:
    producer = endless_producer(images, network)

    def produced() -> int:
        s = dockerkit.status(producer, 9101)
        return sum(s["produced"].values()) if s else 0

    dockerkit.wait_for("the producer to produce", lambda: produced() > 2000, 120,
                       on_timeout=lambda: dockerkit.logs(producer))
    started = time.monotonic()
    docker("stop", "-t", "30", producer, timeout=60)
    seconds = time.monotonic() - started
    # 0, not 137: it flushed and exited on SIGTERM by itself, before `docker stop -t 30` would have killed it.
    assert dockerkit.exit_code(producer) == 0, f"after {seconds:.1f} s\n{dockerkit.logs(producer)}"
    done = [json.loads(line) for line in dockerkit.logs(producer, 50).splitlines()
            if line.startswith("{") and '"producer done"' in line]
    assert done, dockerkit.logs(producer)
    summary = done[-1]
    assert summary["stopped_by"] == "SIGTERM"
    assert summary["failed"] == 0
    assert summary["acknowledged"] == summary["sent"] > 2000  # everything queued was flushed


def test_a_second_trainer_container_on_the_volume_exits_4_and_a_killed_holder_frees_it(
    images: Images, network: tuple[str, str],
) -> None:
    """Two trainer containers on one named volume (what two pods on one node's ReadWriteOnce volume are)."""
    stack, net = network
    label = f"{dockerkit.STACK_LABEL}={stack}"
    volume = f"{stack}-models"
    docker("volume", "create", "--label", label, volume)
    producer = endless_producer(images, network)

    def trainer(name: str, *extra: str) -> str:
        container = f"{stack}-{name}"
        docker("run", "-d", "--name", container, "--hostname", container, "--label", label, "--network", net,
               *HARDENED, "-v", f"{volume}:/data", *ENV, "-e", "STREAMTRAIN_CHECKPOINT_EVERY_SECONDS=1",
               *extra, images.app, "train")
        return container

    def trained(container: str) -> int:
        s = dockerkit.status(container, 9102)
        return int(s["records_trained"]) if s else 0

    first = trainer("trainer-a")
    dockerkit.wait_for("trainer A to train", lambda: trained(first) > 0, 180, on_timeout=lambda: dockerkit.logs(first))
    second = trainer("trainer-b", "-e", "STREAMTRAIN_LOCK_WAIT_SECONDS=3")
    dockerkit.wait_for("trainer B to exit", lambda: not dockerkit.running(second), 120)
    assert dockerkit.exit_code(second) == 4, dockerkit.logs(second)
    holder = f"another trainer holds /data/checkpoints/.trainer.lock (host {first}, pid 1, since"
    assert holder in dockerkit.logs(second), dockerkit.logs(second)
    assert dockerkit.running(first)

    docker("kill", first)  # SIGKILL: no checkpoint on the way out, and no chance to release anything itself
    third = trainer("trainer-c", "-e", "STREAMTRAIN_LOCK_WAIT_SECONDS=3", "-e", "STREAMTRAIN_IDLE_EXIT_SECONDS=3")
    dockerkit.wait_for("trainer C to train", lambda: trained(third) > 0, 180, on_timeout=lambda: dockerkit.logs(third))
    docker("stop", "-t", "30", producer, timeout=60)
    dockerkit.wait_for("trainer C to finish the stream", lambda: not dockerkit.running(third), 300,
                       on_timeout=lambda: dockerkit.logs(third))
    assert dockerkit.exit_code(third) == 0, dockerkit.logs(third)
    assert "waiting for another trainer" not in dockerkit.logs(third, 400)  # the kernel had released A's lock

    # The ledger over A and C: gap-free from offset 0, and as many records as the producer had acknowledged.
    state = json.loads(docker("run", "--rm", "--label", label, "--network", net, *HARDENED, "-v", f"{volume}:/data",
                              *ENV, images.app, "inspect").stdout)["checkpoint"]
    done = [json.loads(line) for line in dockerkit.logs(producer, 50).splitlines()
            if line.startswith("{") and '"producer done"' in line]
    assert done and done[-1]["failed"] == 0, dockerkit.logs(producer)
    check_exactly_once(state)
    assert state["records_trained"] + state["records_dead_lettered"] == done[-1]["produced"]["train"], state
