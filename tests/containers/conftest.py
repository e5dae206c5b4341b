"""Container tests: the images built through the offline path, and the system as containers.

Needs a Docker engine: without one everything here is skipped with the reason (CI=true makes it a
failure instead, since CI starts the engine with `make docker-engine`). The images are built once per
session (docker/base-image.sh, docker/wheelhouse.sh, docker/images.sh) and reused when the tag exists
and components/, docker/, pyproject.toml and the constraints files have no uncommitted changes. The tfio
variant (<tag>-tfio, IMAGE_VARIANT=tfio) is built only when a test asks for it (fixture tfio_image).
Env: STREAMTRAIN_TEST_IMAGE_TAG picks the tag (default docker/tag.sh: <version>-<git rev>);
STREAMTRAIN_TEST_REBUILD=1 always rebuilds (through the Docker build cache).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.containers import dockerkit
from tests.containers.dockerkit import REPO


@dataclass(frozen=True)
class Images:
    tag: str
    app: str
    broker: str
    base: str
    build_log: Path
    built: bool  # False: reused (the tag existed and the sources were clean)


@dataclass(frozen=True)
class VariantImage:
    ref: str  # <repository>:<tag>-<variant>
    variant: str
    build_log: Path
    built: bool


@pytest.fixture(scope="session")
def docker_engine() -> None:
    reason = dockerkit.engine_unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


def _sources_dirty() -> bool:
    proc = subprocess.run(["git", "status", "--porcelain", "--", "components", "docker", "pyproject.toml",
                           "constraints.txt", "constraints-tfio.txt", ".dockerignore"], cwd=REPO,
                          capture_output=True, text=True)
    return proc.returncode != 0 or bool(proc.stdout.strip())


def _reuse(*refs: str) -> bool:
    return (os.environ.get("STREAMTRAIN_TEST_REBUILD") != "1" and not _sources_dirty()
            and all(dockerkit.image_exists(ref) for ref in refs))


def _build_env(tag: str, variant: str) -> dict[str, str]:
    return {"IMAGE_TAG": tag, "IMAGE_VARIANT": variant, "BASE_IMAGE": dockerkit.OFFLINE_BASE,
            "WHEEL_SOURCE": "wheelhouse", "PIP": os.environ.get("PIP") or dockerkit.pip_of_this_python()}


@pytest.fixture(scope="session")
def images(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """streamtrain:<tag> and streamtrain-broker:<tag>, built offline: debootstrap base + wheelhouse."""
    tag = os.environ.get("STREAMTRAIN_TEST_IMAGE_TAG") or subprocess.run(
        [str(REPO / "docker" / "tag.sh")], capture_output=True, text=True, check=True).stdout.strip()
    app, broker = f"{dockerkit.APP_REPO}:{tag}", f"{dockerkit.BROKER_REPO}:{tag}"
    log = tmp_path_factory.mktemp("build") / "build.log"
    log.write_text("")
    reuse = _reuse(app, broker, dockerkit.OFFLINE_BASE)
    if not reuse:
        env = _build_env(tag, "")
        dockerkit.script("base-image.sh", dockerkit.OFFLINE_BASE, env=env, log=log, timeout=600)
        dockerkit.script("wheelhouse.sh", env=env, log=log, timeout=900)
        dockerkit.script("images.sh", env=env, log=log, timeout=1500)
    return Images(tag, app, broker, dockerkit.OFFLINE_BASE, log, built=not reuse)


@pytest.fixture(scope="session")
def tfio_image(images: Images, tmp_path_factory: pytest.TempPathFactory) -> VariantImage:
    """streamtrain:<tag>-tfio: the same Dockerfile with the tfio extra, offline from .wheelhouse-tfio/."""
    ref = f"{dockerkit.APP_REPO}:{images.tag}-tfio"
    log = tmp_path_factory.mktemp("build-tfio") / "build.log"
    log.write_text("")
    reuse = _reuse(ref, images.base)
    if not reuse:
        env = _build_env(images.tag, "tfio")
        dockerkit.script("wheelhouse.sh", env=env, log=log, timeout=900)
        dockerkit.script("images.sh", env=env, log=log, timeout=1500)
    return VariantImage(ref, "tfio", log, built=not reuse)


@pytest.fixture
def container_names() -> Iterator[list[str]]:
    """Names of throw-away containers a test starts; removed afterwards whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        dockerkit.docker("rm", "-f", name, check=False)
