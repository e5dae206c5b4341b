"""Plumbing for the benchmarks: component processes with memory sampling, topic filling, reading back.

Components run as real processes (`python -m streamtrain ...`), configured by environment like pods.
Counts come from the producer's acknowledgements and from consuming, never from the embedded
broker's high watermarks (tansu reports the base offset of the last record batch + 1). `http_load` is the
load generator of the predictor's REST benchmark.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from streamtrain import wire as codec
from streamtrain.kafka import clients
from streamtrain.local.broker import free_port
from streamtrain.producer.sources import susy_arrays
from streamtrain.service.config import CommonSettings
from streamtrain.service.http import fetch_status

COMMANDS = {"producer": "produce", "trainer": "train", "evaluator": "evaluate", "predictor": "predict"}


def proc_memory_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a running process in MB, from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, amount = line.split(":", 1)
            values[name] = int(amount.split()[0]) / 1024
    if len(values) < 2:
        return None
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Sample:
    seconds: float  # since the process was started
    rss_mb: float
    hwm_mb: float
    records: int | None  # records handled so far, from /status (None if it did not answer)


@dataclass
class Component:
    """One streamtrain component as a process, with /proc memory and /status progress sampled."""

    kind: str  # producer, trainer, evaluator or predictor
    env: dict[str, str]
    workdir: Path
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    sample_every: float = 0.25
    samples: list[Sample] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    @property
    def summary_path(self) -> Path:
        return self.workdir / f"{self.name}.summary.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> Component:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
        env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg", "STREAMTRAIN_LOG_FORMAT": "json",
                    "STREAMTRAIN_HTTP_HOST": "127.0.0.1", "STREAMTRAIN_HTTP_PORT": str(self.port),
                    "STREAMTRAIN_SUMMARY_FILE": str(self.summary_path)})
        env.update(self.env)
        env.update({f"STREAMTRAIN_{k.upper()}": str(v) for k, v in self.options.items()})
        self.summary_path.unlink(missing_ok=True)
        with self.log_path.open("wb") as log:
            self.started = time.monotonic()
            self.process = subprocess.Popen([sys.executable, "-m", "streamtrain", COMMANDS[self.kind]],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        self._sampler = threading.Thread(target=self._sample, name=f"sample-{self.name}", daemon=True)
        self._sampler.start()
        return self

    def status(self, timeout: float = 1.0) -> dict[str, Any] | None:
        return fetch_status(self.port, timeout=timeout)

    def records(self, status: dict[str, Any] | None) -> int | None:
        if status is None:
            return None
        if self.kind == "trainer":
            return int(status.get("records_trained", 0)) + int(status.get("records_dead_lettered", 0))
        if self.kind == "evaluator":
            return int(status.get("records_evaluated", 0)) + int(status.get("records_dead_lettered", 0))
        if self.kind == "predictor":  # Kafka records (an f32-block record holds many rows)
            return int(status.get("records_predicted", 0)) + int(status.get("records_dead_lettered", 0))
        produced = status.get("produced") or {}
        return int(sum(produced.values()))

    def _sample(self) -> None:
        assert self.process is not None
        while not self._stop.is_set() and self.process.poll() is None:
            memory = proc_memory_mb(self.process.pid)
            records = self.records(self.status(timeout=0.5))
            if memory is not None:
                self.samples.append(Sample(time.monotonic() - self.started, *memory, records))
            self._stop.wait(self.sample_every)

    def wait_for(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and predicate(status):
                return status
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}) waiting for {what}\n"
                                   + self.log_tail())
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: timed out waiting for {what}\n" + self.log_tail())

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for the process to exit by itself; returns its summary."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name} did not finish within {timeout:.0f}s\n{self.log_tail()}") from None
        return self._finish(code)

    def stop(self, timeout: float = 60) -> dict[str, Any] | None:
        """SIGTERM (the component finishes its batch, publishes, writes its summary); kill after `timeout`."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            return self._finish(self.process.returncode)
        except RuntimeError:
            return None

    def _finish(self, code: int) -> dict[str, Any]:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(5)
        if code != 0 or not self.summary_path.exists():
            raise RuntimeError(f"{self.name} exited with {code}\n{self.log_tail()}")
        summary: dict[str, Any] = json.loads(self.summary_path.read_text())
        return summary

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def memory(self, from_records: int, to_records: int) -> dict[str, Any]:
        """Peak RSS, and RSS growth from just past `from_records` to the end of the run.

        RSS swings by tens of MB within a run (a SavedModel export allocates, then frees), so each end
        is the median of the samples in the first / last tenth of the window, not a single sample.
        """
        peak = max((s.hwm_mb for s in self.samples), default=None)
        counted = [s for s in self.samples if s.records is not None]
        result: dict[str, Any] = {"peak_rss_mb": round(peak, 1) if peak is not None else None,
                                  "samples": len(self.samples)}
        if not counted:
            return result
        end = max(s.records or 0 for s in counted)
        tenth = max((end - from_records) / 10, 1)
        low = [s for s in counted if from_records <= (s.records or 0) <= from_records + tenth]
        high = [s for s in counted if (s.records or 0) >= end - tenth]
        series = counted[:: max(len(counted) // 40, 1)]
        result["series"] = [[s.records, round(s.rss_mb, 1)] for s in series]  # (records, RSS MB), for plots
        if low and high:
            rss_low = float(np.median([s.rss_mb for s in low]))
            rss_high = float(np.median([s.rss_mb for s in high]))
            result.update({
                "rss_at_low_mb": round(rss_low, 1), "records_at_low": [low[0].records, low[-1].records],
                "rss_at_high_mb": round(rss_high, 1), "records_at_high": [high[0].records, high[-1].records],
                "rss_growth_mb": round(rss_high - rss_low, 1),
            })
        return result


def settings_for(bootstrap: str) -> CommonSettings:
    return CommonSettings(bootstrap_servers=bootstrap)


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    clients.create_topics(clients.admin(settings_for(bootstrap), "bench"), names, partitions)


BLOCK_ROWS = 256  # rows per record of the f32-block topics (the producer's default)


def encode(x: np.ndarray, y: np.ndarray, wire: str = "csv") -> tuple[list[bytes], list[bytes]]:
    if wire == "f32-block":
        return codec.encode_f32_blocks(x, y, BLOCK_ROWS)
    return codec.encode_labels(y), codec.encode_f32(x) if wire == "f32" else codec.encode_rows(x)


def fill(bootstrap: str, topic: str, count: int, seed: int, partitions: int = 1,
         chunk: int = 65_536, wire: str = "csv") -> dict[str, Any]:
    """Produce `count` SUSY-shaped records in a wire format of the producer's, confirmed; returns counts, time."""
    headers = [(codec.FORMAT_HEADER, wire.encode())] if wire != "csv" else None
    producer = clients.producer(settings_for(bootstrap), "bench-fill", **{"linger.ms": 20})
    acked = [0, 0]  # ok, failed

    def delivered(err: Any, _msg: Any) -> None:
        acked[1 if err is not None else 0] += 1

    rng = np.random.default_rng(seed)
    started = time.monotonic()
    encode_seconds = 0.0
    sent = records = 0
    while sent < count:
        n = min(chunk, count - sent)
        t = time.monotonic()
        keys, values = encode(*susy_arrays(rng, n), wire)
        encode_seconds += time.monotonic() - t
        for i in range(len(values)):
            _produce(producer, topic, keys[i], values[i], (records + i) % partitions, delivered, headers)
        sent += n
        records += len(values)
        producer.poll(0)
    producer.flush(300)
    if acked[1] or acked[0] != records:
        raise RuntimeError(f"filling {topic}: {acked[0]} of {records} records acknowledged, {acked[1]} failed")
    return {"records": count, "kafka_records": records, "seconds": round(time.monotonic() - started, 2),
            "encode_seconds": round(encode_seconds, 2), "wire_format": wire}


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, partition: int, callback: Any,
             headers: Any = None) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition, on_delivery=callback,
                             headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


def read(bootstrap: str, topic: str, limit: int | None = None, idle: float = 2.0,
         timeout: float = 300.0) -> Iterator[list[Any]]:
    """Every record of a topic from offset 0 (or the first `limit`), in consume() batches.

    Ends when nothing arrives for `idle` seconds: fetching past the end returns nothing on tansu.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{time.time_ns()}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                         "queued.max.messages.kbytes": 262_144})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in clients.partitions_of(consumer, topic)])
        seen = 0
        last = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() - last < idle and time.monotonic() < deadline:
            batch = [m for m in consumer.consume(10_000, 0.2) if m.error() is None]
            if not batch:
                continue
            last = time.monotonic()
            if limit is not None:
                batch = batch[: limit - seen]
            seen += len(batch)
            yield batch
            if limit is not None and seen >= limit:
                return
    finally:
        consumer.close()


def read_decoded(bootstrap: str, topic: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` records of a topic decoded by the pipeline's codec (single partition: in order)."""
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    formats: list[bytes | None] = []
    for batch in read(bootstrap, topic, limit):
        keys.extend(m.key() for m in batch)
        values.extend(m.value() for m in batch)
        formats.extend(codec.record_format(m.headers()) for m in batch)
    decoded, _ = codec.decode_batch(keys, values, None, formats if any(formats) else None)
    if decoded.bad:
        raise RuntimeError(f"{len(decoded.bad)} undecodable records in {topic}")
    return decoded.features, decoded.labels


def record_positions(bootstrap: str, topic: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(partition, offset, produce timestamp ms) of every record of a topic."""
    parts: list[np.ndarray] = []
    offs: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    for batch in read(bootstrap, topic):
        parts.append(np.fromiter((m.partition() for m in batch), np.int32, len(batch)))
        offs.append(np.fromiter((m.offset() for m in batch), np.int64, len(batch)))
        stamps.append(np.fromiter((m.timestamp()[1] for m in batch), np.int64, len(batch)))
    if not parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(parts), np.concatenate(offs), np.concatenate(stamps)


@dataclass
class Load:
    """What `http_load` saw: each answered request's latency, and how the connections went."""

    latencies: list[float]  # seconds per request answered with 200, every client's
    errors: dict[str, int]  # requests not answered with 200, by exception type or HTTP status
    connections: int  # TCP connections opened: fewer than the requests when the server keeps them alive
    seconds: float  # from the clients' common start to the end of the last request


def http_load(port: int, path: str, bodies: list[bytes], clients: int, seconds: float) -> Load:
    """`clients` threads, each sending POST `path` on 127.0.0.1:`port` back to back for `seconds`, bodies in turn.

    Each client keeps its http.client connection while the server keeps it alive (HTTP/1.1 keep-alive) and opens
    a new one when the server closes it after an answer (HTTP/1.0): a request's latency includes that connect.
    """
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[Counter[str]] = [Counter() for _ in range(clients)]
    connections = [0] * clients
    ends = [0.0] * clients
    ready = threading.Barrier(clients + 1)
    headers = {"Content-Type": "application/json"}

    def client(i: int) -> None:
        conn: http.client.HTTPConnection | None = None
        ready.wait()
        n = i
        while time.perf_counter() < deadline:
            body = bodies[n % len(bodies)]
            n += clients
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    connections[i] += 1
                conn.request("POST", path, body, headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status == 200:
                    latencies[i].append(time.perf_counter() - started)
                else:
                    errors[i][f"HTTP {answer.status}"] += 1
                if answer.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                errors[i][type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,), name=f"load-{i}", daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline = start + seconds  # set before the barrier opens: no client reads it earlier
    ready.wait()
    for thread in threads:
        thread.join(seconds + 60)
    return Load([t for each in latencies for t in each], dict(sum(errors, Counter())), sum(connections),
                max(ends) - start)


def git_revision(root: Path) -> tuple[str, bool]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--", "components", "benchmarks/__init__.py",
                     "benchmarks/__main__.py", "benchmarks/harness.py", "benchmarks/suite.py",
                     "benchmarks/report.py"))
    return rev, dirty


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]
