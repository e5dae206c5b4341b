"""`streamtrain control rewind|skip`: the trainer's answer decides the exit code (no broker: the control topic and
the model-events topic are stood in for)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamtrain.service.config import ControlSettings
from streamtrain.trainer import operator


class Answers:
    def close(self) -> None:
        pass


def answered(monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any] | None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(operator, "_answers", lambda s: Answers())
    monkeypatch.setattr(operator.control, "write", lambda s, client, event: sent.append(event))
    monkeypatch.setattr(operator, "_wait_for", lambda answers, action_id, seconds: answer)
    return sent


def test_a_rewind_to_an_unknown_version_exits_3(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    sent = answered(monkeypatch, {"applied": False, "refusal": "unknown-version",
                                  "reason": "version 99 is not in the model store (there: [3, 4])"})
    assert operator.main(ControlSettings(action="rewind", to_version=99)) == 3
    assert sent[0]["version"] == 99
    assert capsys.readouterr().out == ("streamtrain control: error: the trainer refused the rewind: version 99 is "
                                       "not in the model store (there: [3, 4])\n")


def test_other_refusals_and_no_answer_exit_1(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    answered(monkeypatch, {"applied": False, "refusal": "refused", "reason": "partition 0 is at offset 9, past 1"})
    assert operator.main(ControlSettings(action="skip", to_offsets="0:1")) == 1
    assert "refused the skip: partition 0 is at offset 9" in capsys.readouterr().out
    answered(monkeypatch, {"applied": False, "reason": "from a trainer that does not type its refusals"})
    assert operator.main(ControlSettings(action="rewind", to_version=2)) == 1
    answered(monkeypatch, None)
    assert operator.main(ControlSettings(action="rewind", to_version=2, wait_seconds=1)) == 1
    assert "did not answer within 1 s" in capsys.readouterr().out


def test_an_applied_rewind_prints_the_answer(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    answered(monkeypatch, {"event": "operator-action", "id": "a1", "action": "rewind", "applied": True,
                           "to_version": 3, "published_version": 8, "lineage": 1})
    assert operator.main(ControlSettings(action="rewind", to_version=3)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["action"], printed["to_version"], printed["lineage"], printed["id"]) == ("rewind", 3, 1, "a1")
