"""`docker stop` of the producer: PID 1 gets SIGTERM, flushes what it queued and exits 0.

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
        assert not dockerkit.leftovers(stack)


def test_producer_flushes_and_exits_zero_on_docker_stop(images: Images, network: tuple[str, str]) -> None:
    stack, net = network
    label = f"{dockerkit.STACK_LABEL}={stack}"
    env = ["-e", "STREAMTRAIN_BOOTSTRAP_SERVERS=broker:9092", "-e", "STREAMTRAIN_LOG_FORMAT=json"]
    dockerkit.wait_for("the topics", lambda: docker(
        "run", "--rm", "--label", label, "--network", net, *HARDENED, *env, images.app, "topics",
        "--partitions", "2", check=False).returncode == 0, 90, interval=2)
    producer = f"{stack}-producer"
    # An endless generated stream (count 0), rate-limited: only a signal ends it.
    docker("run", "-d", "--name", producer, "--label", label, "--network", net, *HARDENED, *env,
           "-e", "STREAMTRAIN_SOURCE=susy", "-e", "STREAMTRAIN_COUNT=0", "-e", "STREAMTRAIN_RATE=2000",
           images.app, "produce")

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
