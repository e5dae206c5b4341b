"""Invalid configuration, as a user or a Helm chart gives it: each fails before connecting, exit code 2, one line.

Every case runs the real command line in a process of its own, with flags or env variables, and
points it at a listening socket that counts connections: a configuration error must be reported
before anything is dialled. The line names the option (flag, and env variable for values given
as env); a planted password never shows.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SECRET = "pl4nted-S3cret-in-config"
PEM = "existing.pem"  # replaced by a real file's path


class ConnectionCounter:
    """A listening socket standing in for the Kafka broker: it only counts who connects."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.sock.close()


# (command, flags, env, the flag the one line must name)
CASES: list[tuple[str, list[str], dict[str, str], str]] = [
    ("train", ["--batch-size", "0"], {}, "--batch-size"),
    ("train", [], {"STREAMTRAIN_BATCH_SIZE": "abc"}, "--batch-size"),
    ("train", ["--bootstrap-servers", "kafka-without-port"], {}, "--bootstrap-servers"),
    ("train", [], {"STREAMTRAIN_BOOTSTRAP_SERVERS": "a:1,b:99999"}, "--bootstrap-servers"),
    ("train", ["--train-topic", "no spaces allowed"], {}, "--train-topic"),
    ("train", ["--security-protocol", "TLS"], {}, "--security-protocol"),
    ("train", [], {"STREAMTRAIN_SECURITY_PROTOCOL": "TLS"}, "--security-protocol"),
    ("train", ["--security-protocol", "SSL", "--ssl-ca-location", "/nonexistent/ca.pem"], {}, "--ssl-ca-location"),
    ("train", ["--ssl-certificate-location", PEM], {}, "--ssl-key-location"),
    ("train", ["--security-protocol", "SASL_SSL"], {}, "--sasl-username"),
    ("train", ["--security-protocol", "SASL_SSL", "--sasl-username", "u"], {}, "--sasl-password"),
    ("train", ["--security-protocol", "SASL_SSL", "--sasl-password", SECRET], {}, "--sasl-username"),
    ("train", [], {"STREAMTRAIN_SASL_PASSWORD_FILE": "/nonexistent/password"}, "--sasl-password-file"),
    ("train", ["--http-port", "70000"], {}, "--http-port"),
    ("train", ["--log-level", "LOUD"], {}, "--log-level"),
    ("train", ["--model", "nonsense"], {}, "--model"),
    ("train", ["--model", "/nonexistent/model.keras"], {}, "--model"),
    ("train", ["--publish-every-seconds", "0"], {}, "--publish-every-seconds"),
    ("train", ["--on-offset-loss", "ignore"], {}, "--on-offset-loss"),
    ("train", [], {"STREAMTRAIN_ON_OFFSET_LOSS": "ignore"}, "--on-offset-loss"),
    ("train", ["--learning-rate", "0"], {}, "--learning-rate"),
    ("train", ["--checkpoint-every-seconds", "-1"], {}, "--checkpoint-every-seconds"),
    ("train", ["--broker-stall-seconds", "0"], {}, "--broker-stall-seconds"),
    ("produce", ["--test-fraction", "1.5"], {}, "--test-fraction"),
    ("produce", ["--source", "csv"], {}, "--csv-path"),
    ("produce", ["--drift-points", "5,3"], {}, "--drift-points"),
    ("produce", [], {"STREAMTRAIN_RATE": "-5"}, "--rate"),
    ("evaluate", ["--window", "5"], {}, "--window"),
    ("evaluate", ["--session-timeout-ms", "10"], {}, "--session-timeout-ms"),
    ("evaluate", ["--model-name", "../../etc"], {}, "--model-name"),
    ("broker", ["--cert", PEM], {}, "--key"),
    ("broker", ["--client-ca", PEM], {}, "--client-ca"),
    ("broker", [], {"STREAMTRAIN_BROKER_PORT": "-1"}, "--port"),
]


def _run(case: tuple[str, list[str], dict[str, str], str], pem: Path) -> tuple[int, str, str, int]:
    command, flags, env_extra, _ = case
    counter = ConnectionCounter()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
        env.update({"STREAMTRAIN_BOOTSTRAP_SERVERS": f"127.0.0.1:{counter.port}", "STREAMTRAIN_LOG_FORMAT": "json",
                    "STREAMTRAIN_SASL_PASSWORD": SECRET if "SASL_SSL" not in flags else "",
                    "STREAMTRAIN_BROKER_PORT": "0"})
        env = {k: v for k, v in env.items() if v}
        env.update(env_extra)
        args = [str(pem) if a == PEM else a for a in flags]
        result = subprocess.run([sys.executable, "-m", "streamtrain", command, *args], env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        return result.returncode, result.stdout, result.stderr, counter.accepted
    finally:
        counter.close()


def test_invalid_configuration_table(tmp_path: Path) -> None:
    pem = tmp_path / "any.pem"
    pem.write_text("not really a certificate; the option only has to name an existing file\n")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: _run(case, pem), CASES))
    failures = []
    for case, (code, out, err, connections) in zip(CASES, results, strict=True):
        command, flags, env_extra, option = case
        lines = err.strip().splitlines()
        problems = [
            f"exit {code}, not 2" if code != 2 else "",
            f"{len(lines)} lines on stderr" if len(lines) != 1 else "",
            f"does not name {option}" if option not in err else "",
            "names no env variable" if env_extra and not any(name in err for name in env_extra) else "",
            "a traceback" if "Traceback" in err else "",
            "the planted password" if SECRET in out + err else "",
            f"{connections} connection(s) to the broker" if connections else "",
            "output on stdout" if out.strip() else "",
        ]
        if any(problems):
            failures.append(f"streamtrain {command} {' '.join(flags)} {env_extra}: "
                            f"{'; '.join(p for p in problems if p)}\n    stderr: {err.strip()[:300]}")
    assert not failures, "\n".join(failures)
    assert len(CASES) >= 30


@pytest.mark.parametrize("command", ["produce", "train", "evaluate"])
def test_a_valid_configuration_does_connect(command: str, tmp_path: Path) -> None:
    """The counter works: with nothing wrong, the same set-up dials the broker (then gives up)."""
    counter = ConnectionCounter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
    env.update({"STREAMTRAIN_BOOTSTRAP_SERVERS": f"127.0.0.1:{counter.port}", "STREAMTRAIN_HTTP_PORT": "0",
                "STREAMTRAIN_MODEL_DIR": str(tmp_path / "m"), "STREAMTRAIN_CHECKPOINT_DIR": str(tmp_path / "c"),
                "STREAMTRAIN_REPORT_DIR": str(tmp_path / "r")})
    process = subprocess.Popen([sys.executable, "-m", "streamtrain", command], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = 90.0
        step = 0.2
        waited = 0.0
        while counter.accepted == 0 and waited < deadline and process.poll() is None:
            threading.Event().wait(step)
            waited += step
        assert counter.accepted > 0
    finally:
        process.kill()
        process.wait()
        counter.close()
