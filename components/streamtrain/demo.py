"""`streamtrain demo`: the whole pipeline on this machine, as separate processes, then a summary.

broker (tansu) -> topics -> trainer + evaluator (waiting) + predictor -> producer streams a bounded source, and
the demo feeds the predictor's input topic with unlabelled rows of the same source at the same rate -> trainer
catches up and publishes its final version -> evaluator scores up to the last test record, its quality gate
promoting or rejecting each version -> predictor scores every fed row with the newest promoted version -> one REST
:predict request -> summary table + accuracy plot. Every process started here is stopped here, on Ctrl-C too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamtrain.kafka import clients
from streamtrain.local.broker import EmbeddedBroker, free_port
from streamtrain.producer import sources
from streamtrain.service.config import CommonSettings, DemoSettings, EvaluatorSettings
from streamtrain.service.http import fetch_status

log = logging.getLogger("streamtrain.demo")

COMMANDS = {"producer": "produce", "trainer": "train", "evaluator": "evaluate", "predictor": "predict"}
TEST_FRACTION = 0.2  # the producer's share of test records (its default, passed explicitly: the gate depends on it)
PUBLISH_EVERY_SECONDS = 3  # the trainer publishes a version this often
FEED_SEED = 7  # the feed's generators draw records of the demo's source that the trainer never saw
REST_ROWS = 4  # rows of the demo's one REST :predict request
MODEL_NAME = "streamtrain"  # the components' default --model-name


def gate_min_records(rate: float, count: int) -> int:
    """The demo evaluator's --gate-min-records: how many test records a version is scored on before its verdict.

    A version is scored on the test records that arrive while it is the newest: about rate x TEST_FRACTION x
    PUBLISH_EVERY_SECONDS of them (300 at the default 500 records/s). With the evaluator's default of 500 no version
    but the first (scored on the backlog) would ever be judged, so nothing newer would be served. Half of what a
    version gets leaves room for versions published or loaded late (the gap between versions varies). At full speed
    (rate 0), or when the whole stream is shorter than that, the first version scores the backlog: half of all the
    test records, at most the default.
    """
    default = int(EvaluatorSettings.model_fields["gate_min_records"].default)
    per_version = count * TEST_FRACTION
    if rate:
        per_version = min(per_version, rate * TEST_FRACTION * PUBLISH_EVERY_SECONDS)
    return max(10, min(default, int(per_version / 2)))  # (10: the setting's least)


class Child:
    """A component process with its log file and status endpoint."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.port = int(env["STREAMTRAIN_HTTP_PORT"])
        self.log_path = logs / f"{name}.log"
        command = COMMANDS[name]
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "streamtrain", command], env=env,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any] | None:
        return fetch_status(self.port)

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM); `stop` then waits for it."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 30.0) -> int:
        if self.running():
            self.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode


class Feed(threading.Thread):
    """The predictor's input: the features of `count` records of the demo's source, without their labels, keyed
    id-0, id-1, ..., written to the input topic at the demo's rate in the producer's wire format (CSV rows)."""

    def __init__(self, settings: DemoSettings, common: CommonSettings) -> None:
        super().__init__(name="demo-feed", daemon=True)
        self.s = settings
        self.common = common
        self.acked = 0
        self.failed = 0
        self.error: str | None = None
        self.rows: list[list[float]] = []  # the first rows fed, for the REST request
        self.done = threading.Event()
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def chunks(self) -> Iterator[sources.Chunk]:
        """The demo's source as the producer reads it (finite sources repeat), generators with their own seed."""
        s = self.s
        if s.source == "csv":
            if s.csv_path is None:
                raise ValueError("--csv-path is required with --source csv")
            return sources.csv_file(s.csv_path, passes=0)
        if s.source == "breast-cancer":
            return sources.breast_cancer(FEED_SEED, passes=0)
        if s.source == "susy":
            return sources.susy_like(FEED_SEED)
        return sources.drift(FEED_SEED, [])

    def run(self) -> None:
        try:
            self.feed()
        except Exception as exc:  # reported by the demo, which then fails
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def on_delivery(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1

    def feed(self) -> None:
        kafka = clients.producer(self.common, "demo-feed")
        rate, count, sent = self.s.rate, self.s.count, 0
        step = max(1, int(rate / 20)) if rate else sources.CHUNK  # as the producer paces: ~20 checks a second
        started = time.monotonic()
        for chunk in self.chunks():
            values = chunk.values[:count - sent]  # (a source's unusable lines are the producer's to dead-letter)
            self.rows += [row for row in map(_floats, values[:REST_ROWS]) if row][:REST_ROWS - len(self.rows)]
            for start in range(0, len(values), step):
                for value in values[start:start + step]:
                    while True:
                        try:
                            kafka.produce(self.common.input_topic, key=f"id-{sent}".encode(), value=value,
                                          on_delivery=self.on_delivery)
                            break
                        except BufferError:
                            kafka.poll(0.05)
                    sent += 1
                kafka.poll(0)
                ahead = sent / rate - (time.monotonic() - started) if rate else 0
                if self._halt.wait(max(ahead, 0)):
                    break
            if self._halt.is_set() or sent >= count:
                break
        self.failed += kafka.flush(60)


def _floats(value: bytes) -> list[float] | None:
    """A CSV row as numbers, or None if it has a value JSON cannot carry (the REST request skips it)."""
    try:
        row = [float(v) for v in value.split(b",")]
    except ValueError:
        return None
    return row if all(math.isfinite(v) for v in row) else None


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
    (work / "rest-predict.json").unlink(missing_ok=True)
    children: list[Child] = []
    feed: Feed | None = None
    broker = EmbeddedBroker()
    started = time.monotonic()
    try:
        broker.start()
        common = CommonSettings(bootstrap_servers=broker.bootstrap)
        clients.create_topics(clients.admin(common, "demo"), clients.topic_names(common), settings.partitions,
                              configs=clients.topic_configs(common))  # the control topic compacted, as deployed
        print(f"broker up at {broker.bootstrap}; topics created ({settings.partitions} partitions each)")
        base = dict(os.environ)
        min_records = gate_min_records(settings.rate, settings.count)
        trainer = Child("trainer", _env(base, broker.bootstrap, model_dir=work / "models",
                                        checkpoint_dir=work / "checkpoints", batch_size=settings.batch_size,
                                        batch_max_wait_ms=200, publish_every_seconds=PUBLISH_EVERY_SECONDS,
                                        model=settings.model, summary_file=work / "trainer-summary.json"),
                        work / "logs")
        # The gate judges each version on fewer test records than by default: see gate_min_records().
        evaluator = Child("evaluator", _env(base, broker.bootstrap, model_dir=work / "models",
                                            report_dir=work / "reports", poll_seconds=2, window=1000,
                                            plot_every_seconds=10, session_timeout_ms=6000,
                                            gate_min_records=min_records,
                                            summary_file=work / "evaluator-summary.json"), work / "logs")
        children += [trainer, evaluator]
        # Stream only once both consumers listen, so the plot shows the model learning from record one.
        _wait("the trainer and evaluator to start", lambda: trainer.status() is not None
              and evaluator.status() is not None, 120, children)
        producer = Child("producer", _env(base, broker.bootstrap, source=settings.source,
                                          csv_path=settings.csv_path, count=settings.count, rate=settings.rate,
                                          test_fraction=TEST_FRACTION, wire_format="csv",  # the feed's too
                                          summary_file=work / "producer-summary.json",
                                          passes=0 if settings.source in ("csv", "breast-cancer") else None),
                         work / "logs")
        children.append(producer)
        # The predictor serves the newest version the gate promoted (the default), so it reads nothing before the
        # first promotion: started with the stream, not to slow the others' start. 0.5 s batches: a few
        # transactions a second rather than one per handful of records.
        predictor = Child("predictor", _env(base, broker.bootstrap, model_dir=work / "models", poll_seconds=2,
                                            input_topic=common.input_topic, output_topic=common.output_topic,
                                            batch_max_wait_ms=500, session_timeout_ms=6000,
                                            transactional_id="streamtrain-demo-predictor",
                                            summary_file=work / "predictor-summary.json"), work / "logs")
        children.append(predictor)
        feed = Feed(settings, common)
        feed.start()
        print(f"streaming {settings.count:,} {settings.source} records"
              + (f" at {settings.rate:g}/s" if settings.rate else "")
              + f", and as many unlabelled ones into {common.input_topic} for the predictor; logs in {work / 'logs'}")
        last_line = 0.0
        while producer.running() or not feed.done.is_set():
            if time.monotonic() - last_line > 5:
                _progress_line(trainer, evaluator, predictor)
                last_line = time.monotonic()
            time.sleep(0.5)
        if producer.process.returncode != 0:
            raise RuntimeError(f"producer exited with code {producer.process.returncode}; see {producer.log_path}")
        if feed.error is not None or feed.failed:
            raise RuntimeError(f"feeding {common.input_topic} failed: "
                               f"{feed.error or f'{feed.failed} records not acknowledged'}")
        fed = feed.acked
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
        # Its verdicts are all on the control topic now (a version is judged while it is scored): it stops while
        # the predictor finishes.
        promoted = (evaluator.status() or {}).get("promoted") or []
        evaluator.terminate()
        if not promoted:
            raise RuntimeError(f"the quality gate promoted no version (each needs {min_records} test records), so "
                               f"the predictor served nothing; see {evaluator.log_path}")
        _wait("the predictor to score every fed record with the newest promoted version",
              lambda: _consumed(predictor) >= fed and (predictor.status() or {}).get("serving_version")
              == max(promoted), 300, children)
        rest = _ask(predictor.port, feed.rows)
        (work / "rest-predict.json").write_text(json.dumps(rest, indent=1))
        predictor.terminate()
        evaluator.stop()
        predictor.stop()
        evaluated = json.loads((work / "evaluator-summary.json").read_text())
        predicted = json.loads((work / "predictor-summary.json").read_text())
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process", file=sys.stderr)
        return 130
    finally:
        if feed is not None:
            feed.stop()
            feed.join(10)
        for child in reversed(children):
            child.stop(10)
        broker.stop()
    _print_summary(produced, trained, evaluated, predicted, fed, rest, time.monotonic() - started, work)
    ok = (trained["records_trained"] + trained["records_dead_lettered"] == n_train
          and evaluated["records_evaluated"] + evaluated["records_dead_lettered"] == n_test
          and predicted["records_predicted"] + predicted["records_dead_lettered"] == fed
          and rest["status"] == 200
          and len(rest["response"].get("predictions", [])) == len(rest["request"]["instances"]))
    return 0 if ok else 1


def _ask(port: int, rows: list[list[float]]) -> dict[str, Any]:
    """One TensorFlow-Serving-style :predict request to the predictor: the request, the answer and its status."""
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict"
    body = {"instances": rows}
    asked = {"url": url, "port": port, "request": body}
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return {**asked, "status": answer.status, "response": json.load(answer)}
    except urllib.error.HTTPError as exc:
        return {**asked, "status": exc.code, "response": json.loads(exc.read() or b"{}")}
    except (OSError, ValueError) as exc:
        return {**asked, "status": 0, "response": {"error": str(exc)}}


def _consumed(child: Child) -> int:
    status = child.status() or {}
    done = status.get("records_trained", status.get("records_evaluated", status.get("records_predicted", 0)))
    return int(done) + int(status.get("records_dead_lettered", 0))


def _progress_line(trainer: Child, evaluator: Child, predictor: Child) -> None:
    t, e, p = trainer.status() or {}, evaluator.status() or {}, predictor.status() or {}
    accuracy = e.get("accuracy")
    line = f"  trained {t.get('records_trained', 0):>7,}  version {t.get('last_version', 0):>3}  "
    if accuracy is None:
        print(line + "(waiting for a model)", flush=True)
        return
    served = p.get("serving_version")
    print(line + f"evaluated {e.get('records_evaluated', 0):>7,}  accuracy {accuracy:.3f}  "
          + (f"predicted {p.get('records_predicted', 0):>7,} with v{served}" if served is not None else
             "(predictor waiting for a promoted version)"), flush=True)


def _print_summary(produced: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any],
                   predicted: dict[str, Any], fed: int, rest: dict[str, Any], seconds: float, work: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if value >= 100 else f"{value:.4f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    table = Table(title="streamtrain demo", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    dead = (produced["dead_lettered"] + trained["records_dead_lettered"] + evaluated["records_dead_lettered"]
            + predicted["records_dead_lettered"])
    promoted, rejected = evaluated.get("promoted", []), sorted(int(v) for v in evaluated.get("rejected", {}))
    served = predicted.get("serving_version")
    answered = len(rest["response"].get("predictions", []))
    rows = [
        ("records produced (train / test)", f"{produced['produced']['train']:,} / {produced['produced']['test']:,}"),
        ("records trained", trained["records_trained"]),
        ("records evaluated", evaluated["records_evaluated"]),
        ("records fed to the predictor (input topic)", fed),
        ("records predicted / dead-lettered", f"{predicted['records_predicted']:,} / "
                                              f"{predicted['records_dead_lettered']:,}"),
        ("records dead-lettered (all components)", dead),
        ("model versions published", trained["last_version"]),
        ("versions promoted / rejected (gate)", f"{len(promoted)} / {len(rejected)}"),
        ("version served by the predictor", f"{served} ({'promoted' if served in promoted else 'NOT promoted'})"),
        ("prequential accuracy (trainer)", trained.get("prequential_accuracy")),
        ("final accuracy (evaluator window)", evaluated.get("accuracy")),
        ("best accuracy (evaluator window)", evaluated.get("best_accuracy")),
        ("final AUC (evaluator window)", evaluated.get("auc")),
        ("producer throughput (records/s)", produced.get("records_per_second")),
        ("predictor REST port", str(rest["port"])),
        ("REST :predict rows -> predictions", f"{len(rest['request']['instances'])} -> {answered} "
                                              f"(HTTP {rest['status']})"),
        ("trainer time to first batch (s)", f"{trained.get('first_batch_seconds') or 0:.2f}"),
        ("wall time (s)", f"{seconds:.1f}"),
    ]
    for what, value in rows:
        table.add_row(what, fmt(value))
    Console().print(table)
    gate = evaluated.get("gate", {})
    print(f"quality gate (accuracy on each version's first {gate.get('min_records')} test records, tolerance "
          f"{gate.get('tolerance')}): promoted {_spans(promoted)}; rejected {_spans(rejected)}")
    shown = {k: [[round(p[0], 4)] for p in v] if k == "predictions" else v for k, v in rest["response"].items()}
    print(f"REST: POST {rest['url']} with {len(rest['request']['instances'])} rows -> HTTP {rest['status']} "
          f"{json.dumps(shown)}")
    print(f"accuracy over time: {work / 'reports' / 'accuracy.png'} (CSV beside it)")


def _spans(versions: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1-3, 5, 7-8'; [] -> 'none'."""
    spans: list[list[int]] = []
    for v in sorted(versions):
        if spans and v == spans[-1][1] + 1:
            spans[-1][1] = v
        else:
            spans.append([v, v])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in spans) or "none"
