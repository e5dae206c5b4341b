"""The online trainer: test-then-train on the train topic, checkpoint, publish versions. Forever.

Data path: train topic -> BatchReader (consume + decode) -> Learner.step (score, then train)
-> checkpoint (weights + optimizer + offsets, atomically) -> model store version -> model-events.
The checkpoint is the source of truth for where to resume; Kafka commits only feed lag monitoring.
"""

from __future__ import annotations

import gc
import logging
import time
from contextlib import ExitStack
from typing import Any

import numpy as np
from confluent_kafka import KafkaException, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from streamtrain import models
from streamtrain.kafka import clients
from streamtrain.kafka.batches import Batch, BatchReader, OffsetLost
from streamtrain.kafka.clients import ConsumerFactory
from streamtrain.kafka.continuity import LogGuard
from streamtrain.kafka.tfio_reader import TfioBatchReader
from streamtrain.metrics import Totals, Window
from streamtrain.service import http, loop
from streamtrain.service.config import ConfigError, TrainerSettings, env_name, flag_name, parse_categorical_columns
from streamtrain.service.runtime import StopFlag
from streamtrain.serving.control import ControlReader
from streamtrain.store import atomic, checkpoint, lock, model_store, shipping
from streamtrain.store.checkpoint import TrainerState
from streamtrain.trainer import assignment, operations, pace, reporting
from streamtrain.trainer.adapt import Adaptation
from streamtrain.trainer.failures import FailureState
from streamtrain.trainer.learner import Learner
from streamtrain.trainer.operations import ActionRejected, UnknownVersion
from streamtrain.trainer.pace import Pace
from streamtrain.trainer.schedule import Schedules

log = logging.getLogger("streamtrain.trainer")

TRAINED = Counter("streamtrain_trainer_records_total", "Records trained on")
BATCHES = Counter("streamtrain_trainer_batches_total", "Micro-batches trained on")
VERSION = Gauge("streamtrain_trainer_model_version", "Newest published model version")
PUBLISH_FAIL = Counter("streamtrain_trainer_publish_failures_total", "Model publications that failed")
CKPT_FAIL = Counter("streamtrain_trainer_checkpoint_failures_total", "Checkpoints that failed")
CKPT_TIME = Gauge("streamtrain_trainer_last_checkpoint_timestamp_seconds", "When the last checkpoint was written")
OFFSET_RESETS = Counter("streamtrain_trainer_offset_resets_total", "Times checkpointed offsets were gone")
PUBLISH_FAILING = Gauge("streamtrain_trainer_publish_failing", "1 while the newest publication attempt failed")
NO_SPACE = Gauge("streamtrain_trainer_model_store_no_space",
                 "1 while publications fail because the model volume has no space left")
CKPT_FAILING = Gauge("streamtrain_trainer_checkpoint_failing", "1 while the newest checkpoint attempt failed")
CKPT_NO_SPACE = Gauge("streamtrain_trainer_checkpoint_no_space",
                      "1 while checkpoints fail because their volume has no space left")
PAUSED = Gauge("streamtrain_trainer_paused", "1 while an operator has paused the trainer (streamtrain control pause)")
STEP_SIZE = Gauge("streamtrain_trainer_batch_size",
                  "Records per optimizer step in use (--batch-size auto: the smallest that keep up)")


class OffsetLossError(RuntimeError):
    """Checkpointed offsets no longer exist on the broker and the policy is to stop (exit code 3)."""


class Trainer:
    def __init__(self, settings: TrainerSettings, stop: StopFlag, producer: Producer | None = None,
                 consumer: ConsumerFactory = clients.consumer) -> None:
        """producer: for dead letters, metrics and model events; consumer(settings, client, group, **config): how
        the topic's consumer is made. Both default to the configured Kafka clients (tests pass their own)."""
        self.s = settings
        self.stop = stop
        self.state = TrainerState()
        self.learner: Learner | None = None
        self.restored: checkpoint.Restored | None = None
        self.window = Window(2000)
        self.adapt = Adaptation(settings)  # drift detection and reactions, replay, class weights
        self.step_pace = Pace(settings.min_batch_size, settings.max_batch_size,
                              None if settings.batch_size == "auto" else settings.batch_size, settings.catch_up_seconds)
        self.step_size: int | None = None  # records per optimizer step, last batch
        self.steps_taken = 0  # optimizer steps in the last batch
        self.rehearsed, self.rehearsal_seconds = 0, 0.0  # rehearsal steps in the batch in hand, and their time
        self.health = http.Health()
        self.kafka = producer if producer is not None else clients.producer(settings, "trainer")
        self.make_consumer = consumer
        self.dead = clients.DeadLetters(self.kafka, settings.dead_letter_topic, "trainer")
        self.published_at_state = -1  # records_trained of the newest published version
        self.consumer: Any = None
        self.guard: LogGuard | None = None
        self.checkpoint_failures = FailureState("checkpoints work again", CKPT_FAIL, CKPT_FAILING, CKPT_NO_SPACE)
        self.publish_failures = FailureState("publishing works again", PUBLISH_FAIL, PUBLISH_FAILING, NO_SPACE)
        self.reader: BatchReader | TfioBatchReader | None = None
        self.control: ControlReader | None = None  # serving decisions, for retention
        self.rate = reporting.Rate()
        self._checkpointed = -1  # records consumed at the last checkpoint
        self._checkpointed_version = -1
        self._savedmodel_at = -float("inf")  # when a version last carried the SavedModel
        self._frozen = False  # gc.freeze() done (after the first batch)
        self.schedules = Schedules.of(settings)
        self._paused_by: dict[str, Any] | None = None  # the operator's pause event while paused
        self._checkpoint_ms: int | None = None  # when this process last wrote a checkpoint

    # --- set-up -------------------------------------------------------------------------------
    def restore(self) -> None:
        self.s.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.restored = checkpoint.load_latest(self.s.checkpoint_dir)
        if self.restored is not None:
            self.state = self.restored.state
            log.info("resuming from checkpoint", extra={"path": str(self.restored.path),
                                                        "records_trained": self.state.records_trained,
                                                        "offsets": self.state.offsets})
        # Staging directories of a trainer killed mid-publication: hidden from readers, but they take space.
        atomic.clean_staging(model_store.model_root(self.s.model_dir, self.s.model_name))
        on_disk = model_store.version_numbers(self.s.model_dir, self.s.model_name)
        self.state.last_version = max([self.state.last_version, *on_disk])
        # What the newest version holds, not what the checkpoint does: a kill between a checkpoint and the next
        # publication leaves the checkpoint ahead, and that state must still be published (at the next
        # publication or the clean stop) even when no new record ever comes.
        newest = model_store.newest(self.s.model_dir, self.s.model_name)
        self.published_at_state = int(newest.manifest["records_trained"]) if newest else 0
        self.adapt.load(self.state.extra.get("adapt"))
        VERSION.set(self.state.last_version)
        if self.s.ship_versions:
            shipped = shipping.ship_store(self.kafka, self.s.model_files_topic, self.s.model_dir, self.s.model_name)
            log.info("versions in the store shipped", extra={"versions": shipped})

    def build_learner(self, width: int) -> None:
        categories = self.categories(width)
        model = models.build(self.s.model, width, self.s.seed, categories)
        self.learner = Learner(model, self.s.base_learning_rate())
        if self.restored is not None:
            self.learner.restore(self.restored.weights, self.restored.optimizer)
            self.learner.set_learning_rate(self.s.base_learning_rate())  # config wins over the checkpoint
            self.restored = None
        self.state.width = width
        log.info("model ready", extra={"model": self.s.model, "width": width,
                                       "categorical_columns": models.format_categories(categories),
                                       "parameters": model.count_params()})

    def categories(self, width: int) -> dict[int, int]:
        """--categorical-columns, checked against the records' width and the checkpoint's model; kept in the
        checkpoint (extra), since a changed declaration may fit the checkpoint's weight shapes and mean nonsense."""
        declared = parse_categorical_columns(self.s.categorical_columns)
        spelled = models.format_categories(declared)
        trained_with = self.state.extra.get("categorical_columns", "")
        try:
            models.check_categories(declared, width)
            if self.restored is not None and trained_with != spelled:
                raise ValueError(f"the checkpoint's model was trained with {trained_with or 'none'}; declare that, "
                                 "or start a new model in another --checkpoint-dir")
        except ValueError as exc:
            raise ConfigError(f"{flag_name('categorical_columns')} ({env_name('categorical_columns')}): "
                              f"{exc}") from None
        if declared:
            self.state.extra["categorical_columns"] = spelled
        return declared

    def assign(self) -> tuple[Any, LogGuard]:
        """Assign every partition of the train topic at the checkpointed offsets (no consumer group)."""
        topic = self.s.train_topic
        # The guard notes connection losses (error_cb) and checks the topic id (kafka/continuity.py).
        self.guard = LogGuard(self.s, topic, None)
        self.consumer = self.make_consumer(self.s, "trainer", self.s.group_id,
                                          **{"auto.offset.reset": "error", "error_cb": self.guard.error_cb})
        marks = clients.watermarks(self.consumer, topic)
        saved = dict(self.state.offsets.get(topic, {}))
        # Offsets belong to one incarnation of the topic: a re-created topic has a new id.
        topic_id, saved_id = self.guard.current_id(), self.state.extra.get("topic_ids", {}).get(topic)
        fetchable = clients.records_exist(self.s, topic, assignment.past_the_end(saved, marks))
        for lost in assignment.lost_offsets(saved, marks, fetchable, saved_id, topic_id):
            self.offset_lost(lost)
        if topic_id:
            self.state.extra.setdefault("topic_ids", {})[topic] = topic_id  # checkpointed with the offsets
            self.guard.expected_id = topic_id
        starts = assignment.start_offsets(marks, self.state.offsets.get(topic, {}), self.s.start_offset)
        self.consumer.assign([TopicPartition(topic, partition, offset) for partition, offset in starts.items()])
        log.info("assigned", extra={"topic": topic, "offsets": starts})
        return self.consumer, self.guard

    def offset_lost(self, lost: assignment.LostOffset) -> None:
        """Apply --on-offset-loss to one lost offset: stop, or forget it (the partition restarts at its earliest)."""
        topic = self.s.train_topic
        message = f"checkpointed offset {lost.offset} of {topic}[{lost.partition}] is not on the broker ({lost.why})."
        OFFSET_RESETS.inc()
        if self.s.on_offset_loss == "fail":
            raise OffsetLossError(message + " Stopping (--on-offset-loss fail); use --on-offset-loss "
                                  "restart-from-earliest to keep the model and continue from the earliest offset.")
        log.error(message + " Continuing from the earliest offset (--on-offset-loss restart-from-earliest).")
        old = self.state.ledger.get(topic, {}).pop(lost.partition, [])
        self.state.offset_resets.append({"topic": topic, "partition": lost.partition, "lost_offset": lost.offset,
                                         "ledger_before": old, "at": time.time()})
        self.state.offsets.get(topic, {}).pop(lost.partition, None)

    # --- the loop -----------------------------------------------------------------------------
    def train(self, batch: Batch) -> None:
        d = batch.decoded
        batch.dead_letter(self.dead)
        self.steps_taken = 0
        if d.labels.size:
            if self.learner is None:
                assert batch.width is not None
                self.build_learner(batch.width)
            assert self.learner is not None
            if d.features.shape[1] != self.learner.width:
                raise ValueError(f"records have {d.features.shape[1]} features, the model takes {self.learner.width}")
            # Steps through the batch: as small as keeping up with the stream allows (trainer/pace.py).
            parts = []
            self.step_size = self.next_step_size(batch)
            STEP_SIZE.set(self.step_size)
            steps = pace.split(d.labels.size, self.step_size)
            self.steps_taken = len(steps)
            extra = self.step_pace.spare_steps(self.s.rehearsal_steps) if self.at_smallest_steps() else 0
            for start, end in steps:
                part, drift_event = self.adapt.step(self.learner, d.features[start:end], d.labels[start:end],
                                                    self.state.records_trained + start)
                if drift_event is not None:
                    self.drift_event(drift_event)
                parts.append(part)
                self.rehearse(extra)  # right after the step: the next records are scored by what it rehearsed
            scores = parts[0] if len(parts) == 1 else np.concatenate(parts)
            self.window.add(scores, d.labels)
            preq = Totals()
            preq.add(scores, d.labels)
            self.state.preq_records += preq.records
            self.state.preq_correct += preq.correct
            self.state.preq_loss_sum += preq.loss_sum
            self.state.newest_record_ms = max(self.state.newest_record_ms, int(batch.timestamps[d.good].max()))
        if batch.offsets.size and batch.offsets[0] >= 0:  # the tensorflow-io backend has no offsets
            for partition, start, end in batch.ranges():
                self.state.record_range(batch.topic, partition, start, end)
        self.state.records_trained += int(d.labels.size)
        self.state.records_dead_lettered += len(d.bad)
        self.state.batches += 1
        TRAINED.inc(int(d.labels.size))
        BATCHES.inc()
        self.kafka.poll(0)

    def drift_event(self, event: dict[str, Any]) -> None:
        """Announce a drift on the metrics topic; the next manifest and /status list it too."""
        clients.send_json(self.kafka, self.s.metrics_topic, {
            "component": "trainer", "event": "drift", "model_name": self.s.model_name,
            "model_version": self.state.last_version, **event}, key="trainer")

    def checkpoint(self) -> bool:
        """Write a checkpoint if anything was consumed since the last one."""
        consumed = self.state.records_trained + self.state.records_dead_lettered
        if self.learner is None or (consumed == self._checkpointed and self.state.seq > 0
                                    and self.state.last_version == self._checkpointed_version):
            return self.learner is not None
        if not self.dead.settle(5.0):  # the checkpoint marks their records done: they must be on the broker
            log.warning("checkpoint postponed: dead letters not yet acknowledged by the broker",
                        extra={"pending": self.dead.pending})
            return False
        self.state.extra["adapt"] = self.adapt.to_json()
        try:
            path = checkpoint.save(self.s.checkpoint_dir, self.state, self.learner.model.get_weights(),
                                   self.learner.optimizer_state(), self.s.keep_checkpoints, self.rewind_points())
        except OSError as exc:  # the previous checkpoint stays the newest: model and offsets still agree on disk
            self.checkpoint_failures.failed(exc, "checkpoint failed; training goes on and the next checkpoint retries",
                                            checkpoint_dir=str(self.s.checkpoint_dir))
            return False
        self.checkpoint_failures.succeeded(path=str(path))
        CKPT_TIME.set(time.time())
        self._checkpoint_ms = int(time.time() * 1000)
        self._checkpointed, self._checkpointed_version = consumed, self.state.last_version
        self.commit_offsets()
        log.debug("checkpoint written", extra={"path": str(path)})
        return True

    def rewind_points(self) -> set[int]:
        """The checkpoints a rewind can go back to, kept beyond --keep-checkpoints: those of the versions in the store
        (each version's manifest names the checkpoint written just before it)."""
        seqs = set()
        for number in model_store.version_numbers(self.s.model_dir, self.s.model_name):
            try:
                manifest = model_store.read_manifest(model_store.model_root(self.s.model_dir, self.s.model_name)
                                                     / str(number))
            except model_store.CorruptVersion:
                continue
            if isinstance(manifest.get("checkpoint_seq"), int):
                seqs.add(manifest["checkpoint_seq"])
        return seqs

    def commit_offsets(self) -> None:
        """Mirror the checkpointed offsets to Kafka so lag tools see the trainer's progress."""
        offsets = [TopicPartition(t, p, o) for t, parts in self.state.offsets.items() for p, o in parts.items()]
        if offsets and self.reader is not None:
            self.reader.commit(offsets)

    def publish(self, final: bool = False) -> None:
        """Checkpoint, then publish the checkpointed model as the next version."""
        if self.learner is None or self.state.records_trained == self.published_at_state:
            return
        version = self.state.last_version + 1
        previous = self.state.last_version
        self.state.last_version = version
        if not self.checkpoint():
            self.state.last_version = previous
            return
        info = {
            "records_trained": self.state.records_trained,
            "records_dead_lettered": self.state.records_dead_lettered,
            "offsets": self.state.offsets,
            "newest_record_ms": self.state.newest_record_ms,
            "checkpoint_seq": self.state.seq,
            "model_spec": self.s.model,
            "metrics": self.metric_values(),
            "drift_events": self.adapt.events,
            "lag": self.lag(),
        }
        try:
            every = self.s.savedmodel_every_seconds
            savedmodel = final or every == 0 or time.monotonic() - self._savedmodel_at >= every
            published = model_store.publish(self.s.model_dir, self.s.model_name, self.learner.model, version,
                                            info, self.s.keep_versions, savedmodel=savedmodel,
                                            protect=self.protected())
            if savedmodel:
                self._savedmodel_at = time.monotonic()
        except Exception as exc:  # OSError from Keras, ResourceExhaustedError & co from the SavedModel export
            # model_store.publish removed its staging directory: the store holds exactly what it held before.
            # The checkpoint just written holds the trained state; only the version number is taken back.
            self.state.last_version = previous
            self.publish_failures.failed(exc, "publishing failed; earlier versions are untouched and the next "
                                         "publication retries", version=version, model_dir=str(self.s.model_dir))
            return
        self.publish_failures.succeeded(version=version)
        if self.s.ship_versions:  # the model-files topic mirrors the store: this version in, the removed ones out
            shipping.ship(self.kafka, self.s.model_files_topic, self.s.model_name, published)
            for number, manifest in published.removed:
                shipping.unship(self.kafka, self.s.model_files_topic, self.s.model_name, number, manifest)
        self.published_at_state = self.state.records_trained
        VERSION.set(version)
        clients.send_json(self.kafka, self.s.model_events_topic, {
            "event": "model-published", "model_name": self.s.model_name, "version": version,
            "path": str(published.path), "records_trained": self.state.records_trained,
            "newest_record_ms": self.state.newest_record_ms, "created_at_ms": published.manifest["created_at_ms"],
        }, key=self.s.model_name)
        log.info("model version published", extra={"version": version, "records_trained": self.state.records_trained})

    def protected(self) -> set[int]:
        """Versions retention must keep: the promoted ones predictors may serve or roll back to, the pinned one."""
        return self.control.snapshot().keep(self.s.keep_promoted_versions) if self.control is not None else set()

    def metric_values(self) -> dict[str, Any]:
        return reporting.quality(self.state, self.window)

    def lag(self) -> int | None:
        watermarks = self.reader.high_watermarks if self.reader is not None else None
        return reporting.lag(watermarks, self.state.offsets.get(self.s.train_topic, {}))

    def next_step_size(self, batch: Batch) -> int:
        """Records per optimizer step through this batch (trainer/pace.py): from how fast records arrive on the
        topic and how many wait beyond the batch."""
        watermarks = self.reader.high_watermarks if self.reader is not None else None
        if watermarks:
            self.step_pace.topic_end(watermarks, time.monotonic())
        return self.step_pace.next(self.backlog(batch))

    def backlog(self, batch: Batch) -> int | None:
        """Records on the broker beyond this batch (None: not known, as with the tensorflow-io reader)."""
        watermarks = self.reader.high_watermarks if self.reader is not None else None
        if not watermarks or not batch.offsets.size or batch.offsets[0] < 0:
            return None
        return reporting.lag(watermarks, {**self.state.offsets.get(self.s.train_topic, {}), **batch.ends()})

    def report(self) -> None:
        rate, lag = self.rate(self.state.records_trained), self.lag()
        reporting.export(self.metric_values(), rate, lag)
        payload = {"component": "trainer", "ts_ms": int(time.time() * 1000), **self.status(),
                   "records_per_second": round(rate, 1), "lag": lag}
        clients.send_json(self.kafka, self.s.metrics_topic, payload, key="trainer")
        log.info("progress", extra={k: payload[k] for k in ("records_trained", "records_dead_lettered", "last_version",
                                                            "records_per_second", "lag", "window_accuracy")})

    def status(self) -> dict[str, Any]:
        return {"component": "trainer", "records_trained": self.state.records_trained,
                "records_dead_lettered": self.state.records_dead_lettered, "batches": self.state.batches,
                "last_version": self.state.last_version, "checkpoint_seq": self.state.seq,
                "lag": self.lag(), "batch_size": self.step_size, "last_checkpoint_ms": self._checkpoint_ms,
                "records_skipped": self.state.records_skipped, "lineage": len(self.state.lineage),
                "lineage_started": self.state.lineage[-1] if self.state.lineage else None,
                "paused": self._paused_by is not None,
                "paused_by": {k: (self._paused_by or {}).get(k) for k in ("by", "reason", "ts_ms")}
                if self._paused_by else None,
                **self.metric_values(), **self.adapt.status()}

    # --- the service loop's hooks (service/loop.py runs them) ----------------------------------------
    def endpoints(self) -> http.Endpoints:
        return http.Endpoints()

    def open(self, cleanup: ExitStack) -> BatchReader | TfioBatchReader:
        self.restore()
        width = self.state.width or self.s.n_features
        if width is not None:
            self.build_learner(width)
        self.control = start_control(self.s)
        if self.control is not None:
            cleanup.callback(self.control.stop)
        self.reader = loop.start_reader(self.s, self.s.train_topic, width, "trainer", self.assign)
        self.schedules = Schedules.of(self.s)  # counted from here, once the model is built and the reader runs
        return self.reader

    def handle(self, batch: Batch) -> bool:
        self.apply_actions()
        if self.paused():
            self.stop.wait(loop.POLL_SECONDS)
            return False  # the loop holds the batch and offers it again: trained after the resume, in order
        began = time.perf_counter()
        self.rehearsed, self.rehearsal_seconds = 0, 0.0
        self.train(batch)
        work = time.perf_counter() - began - self.rehearsal_seconds  # the pace measures what the stream asks for
        if self.at_smallest_steps():  # and while no batch waits, up to the rest of the batch's rehearsal
            self.rehearse(self.s.rehearsal_steps * self.steps_taken - self.rehearsed, idle=True)
        first = not self._frozen
        if first:
            self._frozen = True
            # TensorFlow, Keras, the model and the traced step are ~370k objects that live as long as the process;
            # taking them out of the cyclic GC's reach makes the full collection after each SavedModel export
            # (store/model_store.py) 5 ms instead of 250 ms.
            gc.freeze()
        began = time.perf_counter()
        self.schedules.checkpoint.tick()
        self.schedules.publish.tick()
        if not first:  # the first batch's time is mostly building and tracing the model
            self.step_pace.trained(int(batch.decoded.labels.size), work + time.perf_counter() - began)
        return True

    def at_smallest_steps(self) -> bool:
        return self.learner is not None and self.step_size == self.s.min_batch_size

    def rehearse(self, most: int, idle: bool = False) -> None:
        """With --batch-size auto, at the smallest steps: up to `most` extra steps on recent records, in the time the
        stream leaves: after each step as many as the time to catch up (--catch-up-seconds) has room for, and after
        the batch (idle) more while no batch waits, up to --rehearsal-steps per step in all. A fixed --batch-size
        trains deterministically (the same records, the same model), so it takes none (Adaptation keeps no memory)."""
        began, taken = time.perf_counter(), 0
        while taken < most and self.learner is not None and not self.stop.event.is_set() \
                and not (idle and (self.reader is None or self.reader.ready())):
            if not self.adapt.rehearse(self.learner, self.s.min_batch_size):
                break
            taken += 1
        self.rehearsed += taken
        self.rehearsal_seconds += time.perf_counter() - began

    def paused(self) -> bool:
        """Whether an operator paused the trainer; on the way in, the state so far is checkpointed and published,
        so a paused trainer's volume holds everything it trained."""
        event = self.control.snapshot().operate_event if self.control is not None else None
        now = bool(event and event["paused"])
        if now != bool(self._paused_by):
            if now:
                self.publish()  # before the status says paused: what it shows paused is on the volume
            self._paused_by = event if now else None
            PAUSED.set(int(now))
            log.info("paused by an operator" if now else "resumed by an operator",
                     extra={"by": (event or {}).get("by"), "reason": (event or {}).get("reason"),
                            "records_trained": self.state.records_trained})
        return now

    def consumed(self) -> int:
        return self.state.records_trained + self.state.records_dead_lettered

    def tick(self, now: float) -> None:
        self.apply_actions()
        self.paused()  # seen without a batch too: the status says paused even when no record comes
        due = self.schedules
        if due.publish.due(now):
            self.publish()
            due.publish.reset(now)
            due.checkpoint.reset(now)
        elif due.checkpoint.due(now):
            self.checkpoint()
            due.checkpoint.reset(now)
        if due.metrics.due(now):
            self.report()
            due.metrics.reset(now)

    def recover(self, lost: OffsetLost) -> BatchReader:
        self.checkpoint()
        self.close_reader()
        self.offset_lost_while_running(str(lost))
        return self.reopen()

    def close_reader(self) -> None:
        if self.reader is not None:
            self.reader.stop()
        if self.consumer is not None:
            self.consumer.close()  # assign() makes a new one

    def reopen(self) -> BatchReader:
        """A new reader at the state's offsets (assign() checks them against the broker as at start-up)."""
        reader = loop.start_reader(self.s, self.s.train_topic, self.state.width, "trainer", self.assign)
        assert isinstance(reader, BatchReader)  # only the confluent reader has offsets
        self.reader = reader
        return reader

    # --- operator actions (trainer/operations.py) ------------------------------------------------
    def apply_actions(self) -> None:
        """Apply the operators' rewinds and skips not applied yet, each whole or not at all, in the control topic's
        order; checkpoint them, answer each on the model-events topic, then read from the new position."""
        pending = [a for a in (self.control.snapshot().actions.values() if self.control is not None else ())
                   if a["id"] not in self.state.applied_actions]
        if not pending:
            return
        self.close_reader()  # the batch read ahead belongs to the old position
        answers = []
        for action in pending:
            # Noted first, so that every checkpoint holding the action's effect also says it was applied.
            self.state.applied_actions = [*self.state.applied_actions, action["id"]]
            try:
                detail = self.rewind(action) if action["action"] == "rewind" else self.skip(action)
                answer = {"applied": True, **detail}
            except ActionRejected as exc:
                answer = {"applied": False, "reason": str(exc), "refusal": exc.refusal}
                log.warning("operator action rejected", extra={"action": action["action"], "id": action["id"],
                                                                "reason": str(exc)})
            # Where this action left the trainer (a later one in the same turn may move it again).
            answers.append({**answer, "offsets": dict(self.state.offsets.get(self.s.train_topic, {})),
                            "lineage": len(self.state.lineage), "records_trained": self.state.records_trained})
        self._checkpointed = -1  # the actions are applied once they are in a checkpoint
        self.checkpoint()
        for action, answer in zip(pending, answers, strict=True):
            clients.send_json(self.kafka, self.s.model_events_topic, {
                "event": "operator-action", "model_name": self.s.model_name, "id": action["id"],
                "action": action["action"], **answer,
            }, key=self.s.model_name)
        raise loop.Reopen(self.reopen())

    def rewind(self, action: dict[str, Any]) -> dict[str, Any]:
        if self.s.ingest != "confluent":
            raise ActionRejected(f"--ingest {self.s.ingest} has no offsets to rewind to")
        available = model_store.version_numbers(self.s.model_dir, self.s.model_name)
        version = action.get("version")
        if "to_time_ms" in action:
            version = self.version_before(available, int(action["to_time_ms"]))
        if not isinstance(version, int):
            raise ActionRejected(f"a rewind needs a version number, not {version!r}")
        if version not in available:
            raise UnknownVersion(f"version {version} is not in the model store (there: {available})")
        try:
            manifest = model_store.read_manifest(model_store.model_root(self.s.model_dir, self.s.model_name)
                                                 / str(version))
        except model_store.CorruptVersion as exc:
            raise ActionRejected(str(exc)) from None
        seq = manifest.get("checkpoint_seq")
        if not isinstance(seq, int):
            raise ActionRejected(f"version {version} names no checkpoint to go back to")
        try:
            restored = checkpoint.load(checkpoint.path_of(self.s.checkpoint_dir, seq))
        except (OSError, ValueError, KeyError) as exc:
            raise ActionRejected(f"the checkpoint of version {version} (ckpt {seq}) is not usable: {exc}") from None
        self.state = operations.rewound(self.state, restored.state, version, action["id"], action.get("by", ""))
        if self.learner is None or restored.state.width != self.state.width:
            self.restored = restored
            assert restored.state.width is not None
            self.build_learner(restored.state.width)
        else:
            self.learner.restore(restored.weights, restored.optimizer)
            self.learner.set_learning_rate(self.s.base_learning_rate())
        self.adapt.load(self.state.extra.get("adapt"))
        self.published_at_state = -1  # the rewound model becomes the newest version at once
        self.publish()
        log.info("rewound by an operator", extra={"to_version": version, "lineage": len(self.state.lineage),
                                                  "offsets": self.state.offsets, "by": action.get("by")})
        return {"to_version": version, "published_version": self.state.last_version}

    def version_before(self, available: list[int], time_ms: int) -> int:
        """The newest version in the store trained only on records produced before `time_ms`."""
        root = model_store.model_root(self.s.model_dir, self.s.model_name)
        for number in reversed(available):
            try:
                newest = model_store.read_manifest(root / str(number)).get("newest_record_ms")
            except model_store.CorruptVersion:
                continue
            if isinstance(newest, int) and newest < time_ms:
                return number
        raise UnknownVersion(f"no version in the model store was trained only on records before {time_ms} ms "
                             f"(there: {available})")

    def skip(self, action: dict[str, Any]) -> dict[str, Any]:
        if self.s.ingest != "confluent":
            raise ActionRejected(f"--ingest {self.s.ingest} has no offsets to skip")
        topic = self.s.train_topic
        probe = clients.consumer(self.s, "trainer", clients.reader_group(self.s, "trainer", "probe"))
        try:
            marks = clients.watermarks(probe, topic)
            if "to_time_ms" in action:
                here = self.state.offsets.get(topic, {})
                starts = {p: here.get(p, low) for p, (low, _) in marks.items()}
                targets = clients.first_at_or_after(self.s, topic, starts, int(action["to_time_ms"]))
            else:
                targets = {int(p): int(o) for p, o in dict(action.get("to_offsets") or {}).items()}
        except (KafkaException, ValueError, TypeError, TimeoutError) as exc:
            raise ActionRejected(f"could not resolve the skip's offsets: {exc}") from None
        finally:
            probe.close()
        # The embedded broker's watermarks can lag: a target past them counts if the record before it is there.
        beyond = {p: o - 1 for p, o in targets.items() if p in marks and o > marks[p][1]}
        for p in clients.records_exist(self.s, topic, beyond):
            marks[p] = (marks[p][0], targets[p])
        plan = operations.skip_plan(self.state.offsets.get(topic, {}), targets, marks)
        for partition, (start, end) in plan.items():
            self.state.record_skip(topic, partition, start, end)
        log.info("records skipped by an operator", extra={"skipped": {p: list(r) for p, r in plan.items()},
                                                         "by": action.get("by")})
        return {"skipped": {p: list(r) for p, r in plan.items()}}

    def finish(self, run: loop.Run) -> dict[str, Any]:
        """What was trained is checkpointed and published; the producer queue is flushed."""
        deadline = time.monotonic() + self.s.stop_grace_seconds
        self.publish(final=True)
        self.checkpoint()
        if self.reader is not None:
            self.reader.flush_commit()  # the reader thread has stopped: safe to commit from here
        self.report()
        self.kafka.flush(max(deadline - time.monotonic(), 1.0))
        if self.consumer is not None:
            self.consumer.close()
        summary = {**self.status(), **run.summary(), "first_batch_seconds": run.first_batch_seconds,
                   "dead_letter_reasons": self.dead.by_reason,
                   "ledger": self.state.ledger, "overlaps": self.state.overlaps}
        log.info("trainer stopped", extra={k: v for k, v in summary.items() if k not in ("ledger",)})
        gc.unfreeze()  # (for a caller that goes on in this process, such as a test)
        return summary

    def offset_lost_while_running(self, detail: str) -> None:
        """The broker lost the data under our position: apply the same policy as at start-up."""
        topic = self.s.train_topic
        if self.s.on_offset_loss == "fail":
            OFFSET_RESETS.inc()
            raise OffsetLossError(f"the broker no longer has our offsets of {topic} ({detail}); stopping "
                                  "(--on-offset-loss fail). The last checkpoint holds exactly what was trained.")
        # assign() re-checks every partition (topic id, watermarks, fetch probes) and resets the lost ones;
        # watermarks alone cannot tell (the embedded broker's are inexact).
        log.error("the broker lost data under our offsets; re-checking every partition", extra={"detail": detail})


def start_control(settings: TrainerSettings) -> ControlReader | None:
    """The serving decisions, read for retention; without the control topic nothing is protected (a warning)."""
    try:
        return ControlReader(settings, settings.model_name, "trainer").start(timeout=10)
    except (TimeoutError, KafkaException) as exc:
        log.warning("control topic unreadable: retention keeps only the newest versions",
                    extra={"topic": settings.control_topic, "error": str(exc)})
        return None


def run(settings: TrainerSettings, stop: StopFlag | None = None) -> dict[str, Any]:
    """Train until stopped, holding the store's trainer lock (store/lock.py) before anything touches Kafka or disk;
    raises lock.VolumeBusy when another trainer keeps it past --lock-wait-seconds."""
    stop = stop or StopFlag().install()
    directories = [settings.checkpoint_dir, model_store.model_root(settings.model_dir, settings.model_name)]
    with lock.hold(directories, settings.lock_wait_seconds, stopping=lambda: bool(stop)) as held:
        if not held:
            log.info("stopped while waiting for the trainer lock", extra={"signal": stop.signal_name})
            return {"stopped_by": stop.signal_name, "records_trained": 0}
        return loop.run(Trainer(settings, stop), settings, stop)

