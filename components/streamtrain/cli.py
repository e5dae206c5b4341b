"""`streamtrain` command line: one subcommand per component, plus broker, topics, inspect and demo.

Every option of a component is a flag and an env variable (see service/config.py); a bad value exits
with code 2 and one line naming the option, before anything connects.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings

from streamtrain import __version__
from streamtrain.service import config
from streamtrain.service.config import (
    BrokerSettings,
    CommonSettings,
    ControlSettings,
    DemoSettings,
    EvaluatorSettings,
    PredictorSettings,
    ProducerSettings,
    ReportSettings,
    ServingSettings,
    TrainerSettings,
)

log = logging.getLogger("streamtrain")

EXIT_CONFIG = 2
EXIT_OFFSET_LOSS = 3
EXIT_VOLUME_BUSY = 4


def _produce(settings: Any) -> int:
    from streamtrain.producer.main import run

    summary = run(settings)
    return 1 if summary["failed"] else 0


def _train(settings: Any) -> int:
    from streamtrain.store.lock import VolumeBusy
    from streamtrain.trainer.main import OffsetLossError, run

    try:
        run(settings)
    except OffsetLossError as exc:
        log.error(str(exc))
        return EXIT_OFFSET_LOSS
    except VolumeBusy as exc:
        log.error(str(exc))
        return EXIT_VOLUME_BUSY
    return 0


def _evaluate(settings: Any) -> int:
    from streamtrain.evaluator.main import run

    run(settings)
    return 0


def _predict(settings: Any) -> int:
    from streamtrain.predictor.main import run
    from streamtrain.predictor.transactions import TransactionAborted, TransactionsUnavailable

    try:
        run(settings)
    except (TransactionsUnavailable, TransactionAborted) as exc:
        log.error(str(exc))
        return 1
    return 0


def _serving(settings: Any) -> int:
    from streamtrain.serving.commands import main

    return main(settings)


def _broker(settings: Any) -> int:
    from streamtrain.local.broker import EmbeddedBroker
    from streamtrain.service.runtime import StopFlag

    stop = StopFlag().install()
    with EmbeddedBroker(settings.host, settings.port, settings.advertised_host, settings.cert, settings.key,
                        client_ca=settings.client_ca).start(stdout=None) as broker:
        if settings.topics:  # with tansu's own client on its loopback port: no client certificate needed
            broker.create_topics(settings.topics, settings.partitions)
        print(json.dumps({"bootstrap_servers": broker.bootstrap, "tls": broker.tls,
                          "pid": broker.process.pid if broker.process else None}), flush=True)
        while not stop and broker.process is not None and broker.process.poll() is None:
            stop.wait(0.5)
    return 0


class TopicsSettings(CommonSettings):
    """Create the topics (for local runs; on Kubernetes, Strimzi's KafkaTopics do it)."""

    partitions: int = Field(1, ge=1, description="partitions per topic")


def _topics(settings: Any) -> int:
    from streamtrain.kafka import clients

    created = clients.create_topics(clients.admin(settings, "topics"), clients.topic_names(settings),
                                     settings.partitions, configs=clients.topic_configs(settings))
    print(json.dumps({"created": created, "partitions": settings.partitions}))
    return 0


class InspectSettings(CommonSettings):
    """Print the newest checkpoint state and the published versions as JSON (for kubectl exec)."""

    model_dir: Path = Field(Path("models"), description="base directory of the model store")
    model_name: str = Field("streamtrain", description="model name")
    checkpoint_dir: Path = Field(Path("checkpoints"), description="checkpoint directory")


def _inspect(settings: Any) -> int:
    from streamtrain.store import checkpoint, model_store

    versions = []
    for number in model_store.version_numbers(settings.model_dir, settings.model_name):
        path = model_store.model_root(settings.model_dir, settings.model_name) / str(number)
        try:
            manifest = model_store.verify(path)
            # offsets: where in the train topic the version stands (what a rewind to it trains again from)
            versions.append({"version": number, "ok": True, "records_trained": manifest.get("records_trained"),
                             "created_at": manifest.get("created_at"), "offsets": manifest.get("offsets"),
                             "records_dead_lettered": manifest.get("records_dead_lettered"),
                             "metrics": manifest.get("metrics")})
        except model_store.CorruptVersion as exc:
            versions.append({"version": number, "ok": False, "reason": str(exc)})
    state = checkpoint.read_latest_state(settings.checkpoint_dir) if settings.checkpoint_dir.is_dir() else None
    problems = checkpoint.check_ledger(state) if state else []
    print(json.dumps({"versions": versions, "checkpoint": state, "ledger_problems": problems}, indent=2))
    return 0


def _report(settings: Any) -> int:
    from streamtrain.report import run

    try:
        summary = run(settings)
    except (ValueError, OSError) as exc:
        log.error(f"no report: {exc}")
        return 1
    print(json.dumps(summary))
    return 0


def _control(settings: Any) -> int:
    from streamtrain.trainer.operator import main

    return main(settings)


def _demo(settings: Any) -> int:
    from streamtrain.demo import run

    return run(settings)


COMMANDS: dict[str, tuple[type[BaseSettings], Callable[[Any], int], str]] = {
    "produce": (ProducerSettings, _produce, "stream a source into the train and test topics"),
    "train": (TrainerSettings, _train, "train a model online on the train topic and publish versions"),
    "evaluate": (EvaluatorSettings, _evaluate, "evaluate the newest model version on the test topic and judge it"),
    "predict": (PredictorSettings, _predict, "score the input topic and answer REST requests with the served version"),
    "serving": (ServingSettings, _serving, "show serving decisions; pin, unpin or roll back the served version"),
    "control": (ControlSettings, _control, "operate the trainer: show whether it is paused; pause, resume, rewind "
                                           "it to a version, skip records"),
    "broker": (BrokerSettings, _broker, "run the embedded Kafka-protocol broker (tansu) in the foreground"),
    "topics": (TopicsSettings, _topics, "create the topics (train, test, metrics, model events, dead letters, "
                                        "control, input, predictions)"),
    "inspect": (InspectSettings, _inspect, "show the newest checkpoint and the published versions"),
    "demo": (DemoSettings, _demo, "run broker, producer, trainer, evaluator and predictor locally, then summarise"),
    "report": (ReportSettings, _report, "write an HTML report (plots inside) from the metrics topic or a CSV"),
}


# long-running Kafka clients
WATCHED = {"produce": "producer", "train": "trainer", "evaluate": "evaluator", "predict": "predictor"}


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2), like configuration errors."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    top = _OneLineParser(
        prog="streamtrain",
        description="Online training of TensorFlow models on streaming Kafka data. Every option is also an "
                    "environment variable (shown in each subcommand's --help).",
    )
    top.add_argument("--version", action="version", version=f"streamtrain {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_OneLineParser)
    for name, (settings_cls, _run, summary) in COMMANDS.items():
        command = sub.add_parser(name, help=summary, description=(settings_cls.__doc__ or summary).strip())
        config.add_arguments(command, settings_cls)
    return top


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ INFO lines (oneDNN, CPU features) would break the one-JSON-object-per-line logs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    args = parser().parse_args(argv)
    settings_cls, run, _ = COMMANDS[args.command]
    try:
        settings = config.load(settings_cls, args)
    except config.ConfigError as exc:
        print(f"streamtrain {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from streamtrain.service import logs

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack: for hangs

    logs.setup(getattr(settings, "log_level", "INFO"), getattr(settings, "log_format", "auto"))
    started = time.monotonic()
    watch = None
    if args.command in WATCHED:  # broker stall detection: a metric and a log line (kafka/broker_watch.py)
        from streamtrain.kafka.broker_watch import BrokerWatch

        assert isinstance(settings, CommonSettings)
        watch = BrokerWatch(settings, WATCHED[args.command]).start()
    try:
        return run(settings)
    except KeyboardInterrupt:
        log.warning("interrupted", extra={"seconds": round(time.monotonic() - started, 1)})
        return 130
    finally:
        if watch is not None:
            watch.stop()


if __name__ == "__main__":
    sys.exit(main())
