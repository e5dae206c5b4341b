"""podkit's field tables against the chart as test_chart_pods.py renders it: no Docker needed, so a field that
the tables miss, or one not honoured that would not be printed, fails here before any container runs."""

from __future__ import annotations

import pytest

from tests.containers import podkit
from tests.containers.podkit import chartkit
from tests.containers.test_chart_pods import RUNS


def _fields(name: str) -> podkit.Fields:
    base, extra = RUNS[name]
    return podkit.classify_release(chartkit.render(chartkit.deep_merge(chartkit.VALUE_SETS[base], extra)))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_rendered_field_is_classified(name: str) -> None:
    assert not _fields(name).unknown


def test_the_stood_in_objects_fields_docker_cannot_honour_are_listed() -> None:
    listed: set[str] = set().union(*(_fields(name).not_honoured for name in RUNS))
    assert {
        "PersistentVolumeClaim.spec.accessModes",
        "PersistentVolumeClaim.spec.resources.requests.storage",
        "PersistentVolumeClaim.spec.storageClassName",
        "KafkaTopic.spec.replicas",
        "KafkaTopic.spec.config",
    } <= listed, sorted(listed)
    assert not any(path.startswith("KafkaTopic.spec.partitions") for path in listed)


def test_an_unknown_field_of_a_stood_in_object_is_unknown() -> None:
    docs = chartkit.render(chartkit.VALUE_SETS["default"])
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    claim["spec"]["dataSource"] = {"kind": "VolumeSnapshot", "name": "snap"}
    assert "PersistentVolumeClaim: spec.dataSource.kind" in podkit.classify_release(docs).unknown


def test_the_runs_cover_both_listener_authentications() -> None:
    kinds = set()
    for base, extra in RUNS.values():
        docs = chartkit.render(chartkit.deep_merge(chartkit.VALUE_SETS[base], extra))
        kinds.add(podkit.listener_of(docs).authentication)
    assert kinds == {"scram-sha-512", "tls"}
