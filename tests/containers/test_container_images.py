"""The images, built through the offline path (debootstrap base image + host wheelhouse, no registry)."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.containers import dockerkit
from tests.containers.conftest import Images
from tests.containers.dockerkit import HARDENED, docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

BROKER_MAX_BYTES = 64 * 1024 * 1024
APP_MAX_BYTES = 2 * 1024**3


def test_images_build_offline_from_the_imported_base(images: Images) -> None:
    base = dockerkit.inspect(images.base, "image")
    app = dockerkit.inspect(images.app, "image")
    # The base is a `docker import` of a debootstrap tree: one layer, no parent image.
    assert len(base["RootFS"]["Layers"]) == 1
    # The app image sits on exactly that base (same first layer): the offline path was taken.
    assert app["RootFS"]["Layers"][0] == base["RootFS"]["Layers"][0]
    # A handful of layers: base, user, venv, healthcheck script, the project (cache-friendly order).
    assert len(app["RootFS"]["Layers"]) <= 6, app["RootFS"]["Layers"]
    labels = app["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == images.tag.partition("-")[0]
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"]), labels
    assert app["Size"] < APP_MAX_BYTES, f"app image is {app['Size'] / 1e6:.0f} MB"


def test_app_image_runtime_contract(images: Images) -> None:
    config = dockerkit.inspect(images.app, "image")["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["streamtrain"]
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python3"]
    assert config.get("StopSignal") == "SIGTERM"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HOME"] == "/tmp" and env["MPLCONFIGDIR"] == "/tmp/matplotlib"
    assert env["KERAS_HOME"] == "/tmp/keras"
    assert env["STREAMTRAIN_MODEL_DIR"] == "/data/models"
    assert {"9101/tcp", "9102/tcp", "9103/tcp"} <= set(config["ExposedPorts"])


def test_app_image_runs_read_only_as_non_root_without_build_tools(images: Images) -> None:
    version = docker("run", "--rm", *HARDENED, images.app, "--version").stdout
    assert version.strip() == f"streamtrain {images.tag.partition('-')[0]}"
    for command in ("train", "produce", "evaluate", "topics", "inspect"):
        assert "STREAMTRAIN_" in docker("run", "--rm", *HARDENED, images.app, command, "--help").stdout
    checks = r"""
import json, os, shutil, sysconfig, importlib.util
site = sysconfig.get_paths()["purelib"]
def writable(path):
    try:
        with open(os.path.join(path, ".probe"), "w"):
            pass
        return True
    except OSError:
        return False
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "pip": importlib.util.find_spec("pip") is not None,
    "setuptools": importlib.util.find_spec("setuptools") is not None,
    "compilers": [c for c in ("gcc", "cc", "g++", "make") if shutil.which(c)],
    "tf_headers": os.path.isdir(os.path.join(site, "tensorflow", "include")),
    "root_writable": writable("/"), "opt_writable": writable("/opt/venv"), "tmp_writable": writable("/tmp"),
    "tf": importlib.util.find_spec("tensorflow") is not None,
    "tfio": importlib.util.find_spec("tensorflow_io") is not None,
}))
"""
    out = docker("run", "--rm", *HARDENED, "--entrypoint", "python3", images.app, "-c", checks).stdout
    facts = json.loads(out)
    assert facts == {"uid": 10001, "gid": 10001, "pip": False, "setuptools": False, "compilers": [],
                     "tf_headers": False, "root_writable": False, "opt_writable": False, "tmp_writable": True,
                     "tf": True, "tfio": True}, facts


def test_tensorflow_trains_in_the_hardened_container(images: Images) -> None:
    """TensorFlow, Keras and tensorflow-io load and train with a read-only root (only /tmp writable)."""
    code = (
        "import numpy as np, tensorflow as tf, tensorflow_io as tfio, keras\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation='sigmoid')])\n"
        "m.compile('adam', 'binary_crossentropy')\n"
        "x = np.random.rand(64, 4).astype('float32'); y = (x.sum(1) > 2).astype('float32')\n"
        "print('loss', float(m.train_on_batch(x, y)), tf.__version__, tfio.__version__)\n"
    )
    out = docker("run", "--rm", *HARDENED, "--entrypoint", "python3", images.app, "-c", code,
                 timeout=300).stdout
    assert out.startswith("loss ") and "2.16.2" in out and "0.37.1" in out, out


def test_broker_image_is_the_static_binary_alone(images: Images, container_names: list[str]) -> None:
    info = dockerkit.inspect(images.broker, "image")
    assert info["Size"] < BROKER_MAX_BYTES, f"broker image is {info['Size'] / 1e6:.0f} MB"
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"]["Entrypoint"][0] == "/tansu"
    assert len(info["RootFS"]["Layers"]) == 1  # FROM scratch: the binary (and an empty /tmp)
    version = docker("run", "--rm", *HARDENED, "--entrypoint", "/tansu", images.broker, "--version").stdout
    assert version.strip() == "tansu 0.6.0"
    # Up and answering, read-only and non-root: its own HEALTHCHECK turns healthy.
    name = f"st-broker-{uuid.uuid4().hex[:8]}"
    container_names.append(name)
    docker("run", "-d", "--name", name, *HARDENED, images.broker)
    dockerkit.wait_for("the broker's HEALTHCHECK", lambda: dockerkit.health(name) == "healthy", 90,
                       on_timeout=lambda: dockerkit.logs(name))
