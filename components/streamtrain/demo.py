"""`streamtrain demo`: the whole pipeline on this machine, as separate processes, then a summary.

broker (tansu) -> topics -> trainer + evaluator (waiting) -> producer streams a bounded source ->
trainer catches up and publishes its final version -> evaluator scores up to the last test record
-> summary table + accuracy plot. Every process started here is stopped here, on Ctrl-C too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from streamtrain.kafka import clients
from streamtrain.local.broker import EmbeddedBroker, free_port
from streamtrain.service.config import CommonSettings, DemoSettings
from streamtrain.service.http import fetch_status

log = logging.getLogger("streamtrain.demo")


class Child:
    """A component process with its log file and status endpoint."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.port = int(env["STREAMTRAIN_HTTP_PORT"])
        self.log_path = logs / f"{name}.log"
        command = {"producer": "produce", "trainer": "train", "evaluator": "evaluate"}[name]
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "streamtrain", command], env=env,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any] | None:
        return fetch_status(self.port)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 30.0) -> int:
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode


def _env(base: dict[str, str], bootstrap: str, **values: Any) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("STREAMTRAIN_")}
    env.update({"STREAMTRAIN_BOOTSTRAP_SERVERS": bootstrap, "STREAMTRAIN_LOG_FORMAT": "json",
                "STREAMTRAIN_HTTP_HOST": "127.0.0.1", "STREAMTRAIN_HTTP_PORT": str(free_port())})
    env.update({f"STREAMTRAIN_{k.upper()}": str(v) for k, v in values.items() if v is not None})
    return env


def _wait(what: str, predicate: Any, timeout: float, children: list[Child]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in children:
            if not child.running() and child.process.returncode not in (0, None):
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode}; "
                                   f"see {child.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def run(settings: DemoSettings) -> int:
    work = settings.workdir.resolve()
    for sub in ("models", "checkpoints", "reports", "logs"):
        shutil.rmtree(work / sub, ignore_errors=True)  # each demo starts from nothing
    (work / "logs").mkdir(parents=True)
    children: list[Child] = []
    broker = EmbeddedBroker()
    started = time.monotonic()
    try:
        broker.start()
        common = CommonSettings(bootstrap_servers=broker.bootstrap)
        clients.create_topics(clients.admin(common, "demo"), clients.topic_names(common), settings.partitions)
        print(f"broker up at {broker.bootstrap}; topics created ({settings.partitions} partitions each)")
        base = dict(os.environ)
        trainer = Child("trainer", _env(base, broker.bootstrap, model_dir=work / "models",
                                        checkpoint_dir=work / "checkpoints", batch_size=settings.batch_size,
                                        batch_max_wait_ms=200, publish_every_seconds=3, model=settings.model,
                                        summary_file=work / "trainer-summary.json"), work / "logs")
        evaluator = Child("evaluator", _env(base, broker.bootstrap, model_dir=work / "models",
                                            report_dir=work / "reports", poll_seconds=2, window=1000,
                                            plot_every_seconds=10, session_timeout_ms=6000,
                                            summary_file=work / "evaluator-summary.json"), work / "logs")
        children += [trainer, evaluator]
        # Stream only once both consumers listen, so the plot shows the model learning from record one.
        _wait("the trainer and evaluator to start", lambda: trainer.status() is not None
              and evaluator.status() is not None, 120, children)
        producer = Child("producer", _env(base, broker.bootstrap, source=settings.source,
                                          csv_path=settings.csv_path, count=settings.count, rate=settings.rate,
                                          summary_file=work / "producer-summary.json",
                                          passes=0 if settings.source in ("csv", "breast-cancer") else None),
                         work / "logs")
        children.append(producer)
        print(f"streaming {settings.count:,} {settings.source} records"
              + (f" at {settings.rate:g}/s" if settings.rate else "") + f"; logs in {work / 'logs'}")
        last_line = 0.0
        while producer.running():
            if time.monotonic() - last_line > 5:
                _progress_line(trainer, evaluator)
                last_line = time.monotonic()
            time.sleep(0.5)
        if producer.process.returncode != 0:
            raise RuntimeError(f"producer exited with code {producer.process.returncode}; see {producer.log_path}")
        produced = json.loads((work / "producer-summary.json").read_text())
        n_train, n_test = produced["produced"]["train"], produced["produced"]["test"]
        _wait("the trainer to consume every train record",
              lambda: _consumed(trainer) >= n_train, 600, children)
        trainer.stop()
        trained = json.loads((work / "trainer-summary.json").read_text())
        final_version = trained["last_version"]
        _wait("the evaluator to score every test record with the final model",
              lambda: _consumed(evaluator) >= n_test and (evaluator.status() or {}).get("model_version")
              == final_version, 300, children)
        evaluator.stop()
        evaluated = json.loads((work / "evaluator-summary.json").read_text())
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process", file=sys.stderr)
        return 130
    finally:
        for child in reversed(children):
            child.stop(10)
        broker.stop()
    _print_summary(produced, trained, evaluated, time.monotonic() - started, work)
    ok = (trained["records_trained"] + trained["records_dead_lettered"] == n_train
          and evaluated["records_evaluated"] + evaluated["records_dead_lettered"] == n_test)
    return 0 if ok else 1


def _consumed(child: Child) -> int:
    status = child.status() or {}
    done = status.get("records_trained", status.get("records_evaluated", 0))
    return int(done) + int(status.get("records_dead_lettered", 0))


def _progress_line(trainer: Child, evaluator: Child) -> None:
    t, e = trainer.status() or {}, evaluator.status() or {}
    accuracy = e.get("accuracy")
    print(f"  trained {t.get('records_trained', 0):>7,}  version {t.get('last_version', 0):>3}  "
          f"evaluated {e.get('records_evaluated', 0):>7,}  "
          f"accuracy {accuracy:.3f}" if accuracy is not None else
          f"  trained {t.get('records_trained', 0):>7,}  version {t.get('last_version', 0):>3}  (waiting for a model)",
          flush=True)


def _print_summary(produced: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any],
                   seconds: float, work: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if value >= 100 else f"{value:.4f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    table = Table(title="streamtrain demo", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    dead = produced["dead_lettered"] + trained["records_dead_lettered"] + evaluated["records_dead_lettered"]
    rows = [
        ("records produced (train / test)", f"{produced['produced']['train']:,} / {produced['produced']['test']:,}"),
        ("records trained", trained["records_trained"]),
        ("records evaluated", evaluated["records_evaluated"]),
        ("records dead-lettered", dead),
        ("model versions published", trained["last_version"]),
        ("prequential accuracy (trainer)", trained.get("prequential_accuracy")),
        ("final accuracy (evaluator window)", evaluated.get("accuracy")),
        ("best accuracy (evaluator window)", evaluated.get("best_accuracy")),
        ("final AUC (evaluator window)", evaluated.get("auc")),
        ("producer throughput (records/s)", produced.get("records_per_second")),
        ("trainer time to first batch (s)", round(trained.get("first_batch_seconds") or 0, 2)),
        ("wall time (s)", round(seconds, 1)),
    ]
    for what, value in rows:
        table.add_row(what, fmt(value))
    Console().print(table)
    print(f"accuracy over time: {work / 'reports' / 'accuracy.png'} (CSV beside it)")
