"""values.yaml is documented line by line; values.schema.json accepts the value sets and rejects bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import helm_python
import pytest
import yaml
from chartkit import CHART, VALUE_SETS, chart

BAD_VALUES = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))


def test_there_are_bad_values_files() -> None:
    assert len(BAD_VALUES) >= 10


@pytest.mark.parametrize("path", BAD_VALUES, ids=lambda p: p.stem)
def test_schema_rejects_bad_values_with_a_clear_message(path: Path) -> None:
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <message>'"
    expected = first.removeprefix("# expect: ")
    with pytest.raises(helm_python.HelmValuesError) as error:
        chart().validate_schema(yaml.safe_load(text))
    assert expected in str(error.value)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_schema_accepts_the_value_sets(name: str) -> None:
    chart().validate_schema(VALUE_SETS[name])


def test_schema_is_strict_everywhere() -> None:
    """Every object in the schema either closes its keys or is a documented free-form map."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    free_form = {
        "global",
        "commonLabels",
        "config",
        "podAnnotations",
        "nodeSelector",
        "affinity",
        "labels",
        "extraEnv",
    }
    open_objects = []

    def walk(node: dict, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            if node.get("additionalProperties") is not False:
                open_objects.append(path)
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")
        elif node.get("type") == "object" and path.rsplit(".", 1)[-1] not in free_form:
            open_objects.append(path)
        for key in ("anyOf", "oneOf", "allOf"):
            for child in node.get(key, []):
                walk(child, path)

    walk(schema, "")
    assert open_objects == []


def test_every_values_key_is_documented() -> None:
    """Each key line has a comment right above it, unless an ancestor is a block documented with '# --'."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key_line = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(\s|$)")
    stack: list[tuple[int, bool]] = []  # (indent, block documented with '# --')
    undocumented = []
    for number, line in enumerate(lines):
        match = key_line.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        previous = lines[number - 1].strip() if number else ""
        commented = previous.startswith("#")
        if not commented and not any(documented for _, documented in stack):
            undocumented.append(f"line {number + 1}: {line.strip()}")
        stack.append((indent, previous.startswith("# --")))
    assert undocumented == []


def test_values_yaml_is_valid_and_matches_the_contract_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart().validate_schema(values)
    assert values["image"]["repository"] == "streamtrain"
    assert (
        values["producer"]["httpPort"],
        values["trainer"]["httpPort"],
        values["evaluator"]["httpPort"],
        values["predictor"]["httpPort"],
    ) == (9101, 9102, 9103, 8501)
    assert values["security"]["runAsUser"] == values["security"]["runAsGroup"] == 10001
    assert (
        values["trainer"]["groupId"] == "streamtrain-trainer"
        and values["evaluator"]["groupId"] == "streamtrain-evaluator"
        and values["predictor"]["groupId"] == "streamtrain-predictor"
    )
    assert values["predictor"]["autoscaling"]["enabled"] is False
    assert values["topics"]["predictions"]["partitions"] is None  # = topics.input.partitions
    assert values["kafka"]["listener"]["tls"] is True
