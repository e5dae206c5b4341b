"""The plugin's arguments and how a command's exit code in the pod becomes the plugin's, without components: bad
arguments end with exit 2 before anything is asked of a cluster, every command's --help works, and `streamtrain
control`'s exit code 3 (an unknown version) is the plugin's 3."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from streamtrain.kubectl import commands, main
from streamtrain.kubectl.errors import ActionFailed, NotFound
from streamtrain.kubectl.transport import Completed, Pod

COMMANDS = ("status", "versions", "pin", "unpin", "rollback", "pause", "resume", "rewind", "skip")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main.main([command, "--help"])
    assert done.value.code == 0
    assert "exit codes:" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["rewind", "--to-version", "abc"], ["rewind", "--to-version", "0"], ["rewind", "--to-version", "-3"],
    ["rewind", "--to-time", "yesterday"], ["rewind", "--to-time", "2026-13-01"], ["skip", "--to-time", "noon"],
    ["skip", "--to-offsets", "0-5"], ["skip", "--to-offsets", "0:5,x"], ["rewind"], ["skip"],
    ["rewind", "--to-version", "3", "--to-time", "0"], ["rewind", "--to-offsets", "0:1"],
])
def test_bad_rewind_and_skip_targets_are_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main.main(["--local", *args])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kubectl streamtrain: error:"), err


def test_good_targets_reach_the_command_as_given() -> None:
    args = main.parser().parse_args(["rewind", "--to-version", "7"])
    assert args.to_version == 7
    args = main.parser().parse_args(["rewind", "--to-time", "2026-05-01T10:00:00Z"])
    assert args.to_time == "2026-05-01T10:00:00Z"
    assert main.parser().parse_args(["skip", "--to-offsets", "0:12,1:9"]).to_offsets == "0:12,1:9"


@dataclass
class Pods:
    """A transport whose one evaluator pod answers every command with `answer`."""

    answer: Completed
    ran: list[list[str]] = field(default_factory=list)
    description: str = "a test release"

    def pods(self) -> list[Pod]:
        return [Pod("evaluator-0", "evaluator", True, "Running", 0, 9103)]

    def status(self, pod: Pod) -> dict[str, Any] | None:
        return None

    def run(self, pod: Pod, argv: list[str], timeout: float) -> Completed:
        self.ran.append(argv)
        return self.answer


def test_an_unknown_version_in_the_pod_is_not_found() -> None:
    line = ("streamtrain control: error: the trainer refused the rewind: version 99 is not in the model store "
            "(there: [3, 4])")
    pods = Pods(Completed(3, line + "\n", "", "evaluator-0"))
    with pytest.raises(NotFound, match=r"refused the rewind: version 99 is not in the model store") as raised:
        commands.control(pods, "rewind", target=["--to-version=99"])
    assert raised.value.exit_code == 3
    assert pods.ran == [["streamtrain", "control", "rewind", "--to-version=99"]]
    refused = Pods(Completed(1, "streamtrain control: error: the trainer refused the skip: nothing to skip\n", "",
                             "evaluator-0"))
    with pytest.raises(ActionFailed, match="refused the skip") as failed:
        commands.control(refused, "skip", target=["--to-offsets=0:1"])
    assert failed.value.exit_code == 1
