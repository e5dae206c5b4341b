"""The container tooling without a Docker engine: make recipes, shell scripts, the helper scripts."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from tests.containers.dockerkit import REPO

SCRIPTS = sorted((REPO / "docker").glob("*.sh"))
# A stand-in for the top-level Makefile (which defines VENV, PY, PIP and `venv`).
STUB = """VENV = .venv
PY = $(VENV)/bin/python
PIP = $(VENV)/bin/pip
venv:
\t@echo venv-stub
include mk/docker.mk
"""


def _make_n(tmp_path: Path, *args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    makefile = tmp_path / "Makefile"
    makefile.write_text(STUB)
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-f", str(makefile), "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_images_chain(tmp_path: Path) -> None:
    out = _make_n(tmp_path, "images-offline", "IMAGE_TAG=9.9.9-abc1234")
    base = out.index("docker/base-image.sh 'streamtrain-base:bookworm-py311'")
    wheels = out.index("docker/wheelhouse.sh .wheelhouse", base)
    build = out.index("docker/images.sh", wheels)
    line = out[out.rindex("\n", 0, build) + 1:out.index("\n", build)]
    for part in ("IMAGE_TAG='9.9.9-abc1234'", "BASE_IMAGE='streamtrain-base:bookworm-py311'",
                 "WHEEL_SOURCE=wheelhouse", "APP_IMAGE='streamtrain'", "BROKER_IMAGE='streamtrain-broker'"):
        assert part in line, line
    assert out.index("docker/engine.sh") < base


def test_offline_tfio_variant_chain(tmp_path: Path) -> None:
    """images-tfio: the tfio wheelhouse (not the default one), then images.sh with IMAGE_VARIANT=tfio."""
    # IMAGE_SOURCE=offline: `images` re-enters make (executed under -n too), so it must not probe a registry.
    out = _make_n(tmp_path, "images-tfio", "IMAGE_TAG=9.9.9-abc1234", "IMAGE_SOURCE=offline")
    base = out.index("docker/base-image.sh 'streamtrain-base:bookworm-py311'")
    wheels = out.index("IMAGE_VARIANT=tfio PIP='.venv/bin/pip' docker/wheelhouse.sh .wheelhouse-tfio", base)
    build = out.index("docker/images.sh", wheels)
    line = out[out.rindex("\n", 0, build) + 1:out.index("\n", build)]
    for part in ("IMAGE_TAG='9.9.9-abc1234'", "IMAGE_VARIANT='tfio'", "WHEEL_SOURCE=wheelhouse",
                 "BASE_IMAGE='streamtrain-base:bookworm-py311'", "APP_IMAGE='streamtrain'"):
        assert part in line, line
    assert "docker/wheelhouse.sh .wheelhouse\n" not in out, out
    # The default chain stays the default: no variant, the default wheelhouse.
    default = _make_n(tmp_path, "images-offline", "IMAGE_TAG=9.9.9-abc1234")
    assert "IMAGE_VARIANT=''" in default and ".wheelhouse-tfio" not in default, default


def test_variant_table_and_unknown_variants() -> None:
    def variant(name: str) -> subprocess.CompletedProcess[str]:
        code = ('. docker/variant.sh && echo "$VARIANT_EXTRAS|$VARIANT_CONSTRAINTS|$VARIANT_WHEELHOUSE|'
                '$VARIANT_TAG_SUFFIX"')
        return subprocess.run(["bash", "-c", code], cwd=REPO, env={"PATH": "/usr/bin:/bin", "IMAGE_VARIANT": name},
                              capture_output=True, text=True, check=False)

    assert variant("").stdout.strip() == "|constraints.txt|.wheelhouse|"
    assert variant("tfio").stdout.strip() == "tfio|constraints-tfio.txt|.wheelhouse-tfio|-tfio"
    for script in ("wheelhouse.sh", "images.sh"):
        proc = subprocess.run([str(REPO / "docker" / script)], cwd=REPO, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "IMAGE_VARIANT": "gpu"}, timeout=60, check=False)
        assert proc.returncode == 2 and "IMAGE_VARIANT must be empty" in proc.stderr, (script, proc.stderr)
    # Every file the variants name exists, and the tfio pins hold what the extra needs.
    for name in ("constraints.txt", "constraints-tfio.txt"):
        assert (REPO / name).is_file()
    tfio_pins = (REPO / "constraints-tfio.txt").read_text()
    assert "tensorflow-io==" in tfio_pins and "tensorflow-cpu==2.16." in tfio_pins


def test_online_images_and_local_targets(tmp_path: Path) -> None:
    online = _make_n(tmp_path, "images-online", "IMAGE_TAG=t1")
    assert "BASE_IMAGE='python:3.11-slim' WHEEL_SOURCE=index docker/images.sh" in online
    for target, command in (("local-down", "docker/local.sh down"), ("local-logs", "docker/local.sh logs")):
        out = _make_n(tmp_path, target, "IMAGE_TAG=t1", "LOCAL_STACK=s1")
        assert "IMAGE_TAG='t1'" in out and "STACK='s1'" in out and command in out, out


def test_default_tag_is_version_and_git_revision(tmp_path: Path) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    rev = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=False).stdout.strip() or "unknown"
    assert f"IMAGE_TAG='{version}-{rev}'" in _make_n(tmp_path, "images-online")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_are_shellcheck_clean(script: Path) -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).with_name("shellcheck"))
    if not Path(shellcheck).exists() and shutil.which(shellcheck) is None:
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_requirements_are_the_declared_runtime_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    run = [sys.executable, str(REPO / "docker" / "requirements.py"), str(REPO / "pyproject.toml")]
    plain = subprocess.run(run, capture_output=True, text=True, check=True).stdout.splitlines()
    assert plain == project["dependencies"]
    broker = subprocess.run([*run, "--extra", "broker"], capture_output=True, text=True, check=True).stdout
    assert broker.splitlines() == project["dependencies"] + project["optional-dependencies"]["broker"]
    tfio = subprocess.run([*run, "--extra", "tfio"], capture_output=True, text=True, check=True).stdout
    assert tfio.splitlines() == project["dependencies"] + project["optional-dependencies"]["tfio"]
    assert not any(line.startswith("tensorflow-io") for line in plain)  # the default image has none
    assert subprocess.run([*run, "--extra", "nope"], capture_output=True, check=False).returncode == 2


def test_every_pinned_build_requirement_is_exact() -> None:
    lines = [line for line in (REPO / "docker" / "build-constraints.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert {line.split("==")[0] for line in lines} == {"setuptools", "wheel"}
    assert all("==" in line for line in lines)


def test_healthcheck_picks_the_component_port(monkeypatch: pytest.MonkeyPatch) -> None:
    health = _load(REPO / "docker" / "healthcheck.py")
    asked: list[str] = []

    class Response:
        status = 200

        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def urlopen(url: str, timeout: float) -> Response:
        asked.append(url)
        return Response()

    monkeypatch.setattr(health.urllib.request, "urlopen", urlopen)
    monkeypatch.delenv("STREAMTRAIN_HTTP_PORT", raising=False)
    for component, port in (("produce", 9101), ("train", 9102), ("evaluate", 9103)):
        monkeypatch.setattr(health, "component", lambda c=component: c)
        assert health.main() == 0
        assert asked[-1] == f"http://127.0.0.1:{port}/healthz"
    monkeypatch.setattr(health, "component", lambda: None)  # topics, inspect, --help: nothing to probe
    count = len(asked)
    assert health.main() == 0 and len(asked) == count
    monkeypatch.setenv("STREAMTRAIN_HTTP_PORT", "0")  # endpoint disabled
    monkeypatch.setattr(health, "component", lambda: "train")
    assert health.main() == 0 and len(asked) == count
    monkeypatch.setenv("STREAMTRAIN_HTTP_PORT", "9999")

    def refuse(url: str, timeout: float) -> Response:
        raise OSError("connection refused")

    monkeypatch.setattr(health.urllib.request, "urlopen", refuse)
    assert health.main() == 1


def test_dockerignore_keeps_the_context_small() -> None:
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # an allow-list: nothing goes in unless named
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "constraints.txt", "constraints-tfio.txt", "README.md", "components",
                       "docker", ".wheelhouse", ".wheelhouse-tfio"}


def _env_file(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return {name: value for name, value in pairs}


def test_local_env_files_name_only_real_settings() -> None:
    """docker/local/*.env configure the containers only through settings the components read."""
    from streamtrain.service.config import (
        CommonSettings,
        EvaluatorSettings,
        ProducerSettings,
        TrainerSettings,
        env_names,
        load,
    )
    from tests.containers.test_container_stack import ENV_FILES

    classes = {"common": CommonSettings, "producer": ProducerSettings, "trainer": TrainerSettings,
               "evaluator": EvaluatorSettings}
    for name, settings in classes.items():
        for values in (_env_file(REPO / "docker" / "local" / f"{name}.env"), ENV_FILES[name]):
            assert set(values) <= env_names(settings), (name, set(values) - env_names(settings))
            # and the values validate (paths that must exist are not among them)
            fields = {key.removeprefix("STREAMTRAIN_").lower(): value for key, value in values.items()}
            load(settings, fields)
