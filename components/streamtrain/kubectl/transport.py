"""What the commands need from wherever the components run, whatever that is: their pods, each pod's /status,
and a command run beside a component (kube.py: in its pod; local.py: as a process here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from streamtrain.kubectl.errors import NotFound

COMPONENTS = ("producer", "trainer", "evaluator", "predictor")
# The components' --http-port defaults, and the chart's containerPorts.
DEFAULT_PORTS = {"producer": 9101, "trainer": 9102, "evaluator": 9103, "predictor": 8501}


@dataclass(frozen=True)
class Pod:
    """One running instance of a component (a pod; locally: a process answering on its URL)."""

    name: str
    component: str
    ready: bool
    phase: str  # Running, Pending, ... (locally: Running or Unreachable)
    restarts: int | None  # None where nothing counts them (local processes)
    port: int  # the component's HTTP port (/status)


@dataclass(frozen=True)
class Completed:
    """A command run beside a component: its exit code and what it printed."""

    exit_code: int
    stdout: str
    stderr: str
    where: str  # the pod (or "local") it ran in, for messages

    def last_line(self) -> str:
        """The command's own one-line verdict (`streamtrain serving: error: ...`), else the end of stderr."""
        for text in (self.stdout, self.stderr):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return f"exit code {self.exit_code}"


class Transport(Protocol):
    @property
    def description(self) -> str:
        """What the plugin looks at, for messages ("release streamtrain in namespace streamtrain")."""
        ...

    def pods(self) -> list[Pod]:
        """Every pod of the release's components (an empty list: no such release)."""
        ...

    def status(self, pod: Pod) -> dict[str, Any] | None:
        """The pod's /status JSON, or None while it does not answer."""
        ...

    def run(self, pod: Pod, argv: list[str], timeout: float) -> Completed:
        """Run `argv` (starting with `streamtrain`) beside the pod's component, with its configuration."""
        ...


def pods_of(pods: list[Pod], component: str, description: str) -> list[Pod]:
    found = [p for p in pods if p.component == component]
    if not found:
        raise NotFound(f"no {component} pod found for {description}")
    return found


def pick(pods: list[Pod], component: str, description: str) -> Pod:
    """The pod to run a command in: a ready one first (the trainer has one pod: its StatefulSet's)."""
    found = sorted(pods_of(pods, component, description), key=lambda p: (not p.ready, p.name))
    return found[0]
