"""The images, built through the offline path (debootstrap base image + host wheelhouse, no registry).

Two variants of the application image come from docker/Dockerfile: the default one ([project.dependencies]
pinned by constraints.txt: current TensorFlow, numpy 2, no tensorflow-io) and <tag>-tfio (the tfio extra
pinned by constraints-tfio.txt: tensorflow-io with the TensorFlow 2.16 it needs)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.containers import dockerkit
from tests.containers.conftest import Images, VariantImage
from tests.containers.dockerkit import HARDENED, REPO, docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

BROKER_MAX_BYTES = 64 * 1024 * 1024
APP_MAX_BYTES = 2 * 1024**3

# What a container reports about its Python environment (versions from the installed distributions' metadata).
VERSIONS = r"""
import importlib.metadata as md, importlib.util, json
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
print(json.dumps({name: version(name) for name in ("tensorflow-cpu", "tensorflow-io", "numpy", "keras")}
                 | {"tensorflow_io_module": importlib.util.find_spec("tensorflow_io") is not None}))
"""
# Keras trains a batch; prints the versions TensorFlow and numpy report at run time.
TRAIN = (
    "import numpy as np, tensorflow as tf, keras\n"
    "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation='sigmoid')])\n"
    "m.compile('adam', 'binary_crossentropy')\n"
    "x = np.random.rand(64, 4).astype('float32'); y = (x.sum(1) > 2).astype('float32')\n"
    "print('loss', float(m.train_on_batch(x, y)), 'tf', tf.__version__, 'numpy', np.__version__)\n"
)


def _pins(name: str) -> dict[str, str]:
    """{normalized distribution name: version} of a constraints file."""
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            dist, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", dist.strip()).lower()] = version.strip()
    return pins


def _python(image: str, code: str, timeout: float = 300) -> str:
    return docker("run", "--rm", *HARDENED, "--entrypoint", "python3", image, "-c", code, timeout=timeout).stdout


def _report_size(name: str, image: dict[str, Any], record: Callable[[str, object], None],
                 capsys: pytest.CaptureFixture[str]) -> None:
    record(f"{name}_image_bytes", image["Size"])
    with capsys.disabled():
        print(f"\n{name} image: {image['Size']:,} bytes ({image['Size'] / 1e6:.0f} MB), "
              f"{len(image['RootFS']['Layers'])} layers")


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
    # The default image leaves tensorflow-io out: it is the tfio variant's (<tag>-tfio).
    assert facts == {"uid": 10001, "gid": 10001, "pip": False, "setuptools": False, "compilers": [],
                     "tf_headers": False, "root_writable": False, "opt_writable": False, "tmp_writable": True,
                     "tf": True, "tfio": False}, facts


def test_default_image_has_current_tensorflow_and_numpy_2_without_tensorflow_io(
        images: Images, record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str]) -> None:
    """[project.dependencies] pinned by constraints.txt: TensorFlow 2.21 with numpy 2, and no tensorflow-io."""
    info = dockerkit.inspect(images.app, "image")
    _report_size("default", info, record_property, capsys)
    assert info["Config"]["Labels"]["io.streamtrain.extras"] == ""
    pins = _pins("constraints.txt")
    versions = json.loads(_python(images.app, VERSIONS))
    assert versions == {"tensorflow-cpu": pins["tensorflow-cpu"], "tensorflow-io": None, "numpy": pins["numpy"],
                        "keras": pins["keras"], "tensorflow_io_module": False}, versions
    assert versions["tensorflow-cpu"].startswith("2.21.") and versions["numpy"].startswith("2."), versions


def test_tensorflow_trains_in_the_hardened_container(images: Images) -> None:
    """TensorFlow 2.21 and Keras load and train with numpy 2 and a read-only root (only /tmp writable)."""
    out = _python(images.app, TRAIN)
    assert re.fullmatch(r"loss [0-9.e-]+ tf 2\.21\.\S+ numpy 2\.\S+\n", out), out


def test_default_image_refuses_the_tensorflow_io_ingest_with_a_clear_message(images: Images) -> None:
    """--ingest tensorflow-io needs the tfio variant: the default image says so before connecting anywhere."""
    proc = docker("run", "--rm", *HARDENED, "-e", "STREAMTRAIN_INGEST=tensorflow-io", images.app, "train",
                  "--bootstrap-servers", "127.0.0.1:1", timeout=300, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "STREAMTRAIN_INGEST" in proc.stderr and "tensorflow-io is not installed" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- the tfio variant (<tag>-tfio)
def test_tfio_variant_is_the_same_image_with_the_tfio_extra(
        images: Images, tfio_image: VariantImage, record_property: Callable[[str, object], None],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert tfio_image.ref == f"{images.app}-tfio"  # same repository, tag <tag>-tfio
    base = dockerkit.inspect(images.base, "image")
    default = dockerkit.inspect(images.app, "image")
    tfio = dockerkit.inspect(tfio_image.ref, "image")
    _report_size("tfio", tfio, record_property, capsys)
    # Same Dockerfile, same offline base, same layer layout.
    assert tfio["RootFS"]["Layers"][0] == base["RootFS"]["Layers"][0]
    assert len(tfio["RootFS"]["Layers"]) == len(default["RootFS"]["Layers"])
    assert tfio["Size"] < APP_MAX_BYTES, f"tfio image is {tfio['Size'] / 1e6:.0f} MB"
    labels = tfio["Config"]["Labels"]
    assert labels["io.streamtrain.extras"] == "tfio"
    for key in ("org.opencontainers.image.version", "org.opencontainers.image.revision"):
        assert labels[key] == default["Config"]["Labels"][key]
    # The same runtime contract as the default image.
    for key in ("User", "Entrypoint", "Cmd", "Env", "Healthcheck", "ExposedPorts", "StopSignal", "WorkingDir"):
        assert tfio["Config"].get(key) == default["Config"].get(key), key
    version = docker("run", "--rm", *HARDENED, tfio_image.ref, "--version").stdout
    assert version.strip() == f"streamtrain {images.tag.partition('-')[0]}"


def test_tfio_variant_runs_tensorflow_io_with_tensorflow_2_16(tfio_image: VariantImage) -> None:
    pins = _pins("constraints-tfio.txt")
    versions = json.loads(_python(tfio_image.ref, VERSIONS))
    assert versions == {"tensorflow-cpu": pins["tensorflow-cpu"], "tensorflow-io": pins["tensorflow-io"],
                        "numpy": pins["numpy"], "keras": pins["keras"], "tensorflow_io_module": True}, versions
    assert versions["tensorflow-cpu"].startswith("2.16.") and versions["numpy"].startswith("1."), versions
    # tensorflow-io imports, its kernel library (with the Kafka ops the tensorflow-io ingest uses) loads, and Keras
    # trains, all read-only as 10001.
    code = (
        "import tensorflow_io as tfio\n"
        "from tensorflow_io.python.ops import core_ops\n"
        "from tensorflow_io.python.experimental.kafka_batch_io_dataset_ops import KafkaBatchIODataset\n"
        "from tensorflow_io.python.experimental.kafka_group_io_dataset_ops import KafkaGroupIODataset\n"
        "assert hasattr(core_ops, 'io_kafka_group_readable_init'), 'no Kafka kernels'\n"
        "print('tfio', tfio.__version__)\n"
        + TRAIN
    )
    out = _python(tfio_image.ref, code)
    assert re.fullmatch(rf"tfio {re.escape(pins['tensorflow-io'])}\n"
                        r"loss [0-9.e-]+ tf 2\.16\.\S+ numpy 1\.\S+\n", out), out


def test_tfio_variant_accepts_the_tensorflow_io_ingest(tfio_image: VariantImage) -> None:
    """The settings check that refuses --ingest tensorflow-io in the default image passes in this one."""
    code = (
        "from streamtrain.service.config import EvaluatorSettings, TrainerSettings, load\n"
        "for cls in (TrainerSettings, EvaluatorSettings):\n"
        "    print(cls.__name__, load(cls).ingest)\n"
    )
    out = docker("run", "--rm", *HARDENED, "-e", "STREAMTRAIN_INGEST=tensorflow-io", "--entrypoint", "python3",
                 tfio_image.ref, "-c", code, timeout=300).stdout
    assert out.split() == ["TrainerSettings", "tensorflow-io", "EvaluatorSettings", "tensorflow-io"], out


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
