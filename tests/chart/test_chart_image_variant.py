"""image.variant: the tfio image (<tag>-tfio, tensorflow-io with TensorFlow 2.16) and the ingest that needs it."""

from __future__ import annotations

import json
import typing
from typing import Any

import helm_python
import pytest
import yaml
from chartkit import (
    CHART,
    KUBE_VERSION,
    SETTINGS,
    component_workload,
    containers,
    effective_env,
    pod_spec,
    render,
    render_raw,
    workloads,
)

INGEST = "STREAMTRAIN_INGEST"
TFIO = "tensorflow-io"
CONSUMERS = ("trainer", "evaluator")


def _app_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def _images(docs: list[dict[str, Any]]) -> set[str]:
    return {c["image"] for w in workloads(docs) for c in containers(pod_spec(w))}


def test_the_variant_is_a_documented_value_that_defaults_to_the_default_image() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["variant"] == ""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["image"]["properties"]["variant"]["enum"] == ["", "tfio"]
    assert _images(render({})) == {f"streamtrain:{_app_version()}"}


@pytest.mark.parametrize("tag", ["", "0.1.0-abc1234"])
def test_tfio_variant_appends_to_the_tag_of_every_container(tag: str) -> None:
    docs = render({"image": {"repository": "registry.example.com/ml/streamtrain", "tag": tag, "variant": "tfio"}})
    base = tag or _app_version()
    assert _images(docs) == {f"registry.example.com/ml/streamtrain:{base}-tfio"}
    assert len(workloads(docs)) == 4
    for workload in workloads(docs):
        # The version label is the release's version, not the image variant.
        assert workload["metadata"]["labels"]["app.kubernetes.io/version"] == base


def test_changing_the_variant_starts_a_new_producer_job() -> None:
    """The Job's name hashes its pod template, whose image changes with the variant (immutable templates)."""

    def job_name(values: dict[str, Any]) -> str:
        return component_workload(render(values), "producer")["metadata"]["name"]

    assert job_name({"image": {"variant": "tfio"}}) != job_name({})


def test_notes_name_the_image_with_its_variant() -> None:
    text = next(t for p, t in render_raw({"image": {"tag": "1.2.3-abc", "variant": "tfio"}}).items()
                if p.endswith("NOTES.txt"))
    assert "(image streamtrain:1.2.3-abc-tfio)" in text.splitlines()[0]


def test_tensorflow_io_is_an_ingest_the_components_know() -> None:
    """The chart checks the value the settings classes accept for STREAMTRAIN_INGEST."""
    for component in CONSUMERS:
        field = SETTINGS[component].model_fields["ingest"]
        assert TFIO in typing.get_args(field.annotation), field


@pytest.mark.parametrize("component", CONSUMERS)
@pytest.mark.parametrize("variant", [None, ""])
def test_tensorflow_io_ingest_without_the_tfio_variant_fails(component: str, variant: str | None) -> None:
    values: dict[str, Any] = {component: {"extraEnv": {INGEST: TFIO}}}
    if variant is not None:
        values["image"] = {"variant": variant}
    with pytest.raises(helm_python.HelmError) as error:
        render_raw(values)
    message = str(error.value)
    assert f"{component}.extraEnv.STREAMTRAIN_INGEST=tensorflow-io needs image.variant=tfio" in message
    assert f"streamtrain:{_app_version()} has no tensorflow-io" in message


@pytest.mark.parametrize("component", CONSUMERS)
def test_tensorflow_io_ingest_with_the_tfio_variant_runs_the_tfio_image(component: str) -> None:
    values = {"image": {"variant": "tfio"}, component: {"extraEnv": {INGEST: TFIO}}}
    docs = render(values)
    assert _images(docs) == {f"streamtrain:{_app_version()}-tfio"}
    workload = component_workload(docs, component)
    assert effective_env(docs, workload)[component][INGEST] == TFIO
    report = helm_python.lint(str(CHART), values, strict=True, namespace="streamtrain",
                              kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report


# (ids other than a bare "tfio": tests/conftest.py skips items with the keyword tfio where tensorflow-io is missing)
@pytest.mark.parametrize("variant", ["", "tfio"], ids=["default-image", "tfio-image"])
def test_the_default_ingest_runs_on_either_variant(variant: str) -> None:
    docs = render({"image": {"variant": variant}, "trainer": {"extraEnv": {INGEST: "confluent"}}})
    suffix = "-tfio" if variant else ""
    assert _images(docs) == {f"streamtrain:{_app_version()}{suffix}"}
