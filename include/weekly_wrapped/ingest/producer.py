"""Produce the four streams to Kafka, and know for certain that every message landed.

confluent-kafka with `enable.idempotence=true` and `acks=all` (no duplicates from
the producer's own retries, nothing acknowledged before every in-sync replica has
it), compressed, keyed as DESIGN.md says. `StreamProducer.flush()` returns only when
the local queue is empty and no message was reported failed, and raises otherwise:
callers move cursors only after it returned.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

import msgspec
from confluent_kafka import KafkaError, Producer

from weekly_wrapped import contracts

log = logging.getLogger(__name__)

# Safety settings the product relies on; callers cannot weaken them.
REQUIRED_SETTINGS = {
    "enable.idempotence": True,
    "acks": "all",
}
DEFAULT_SETTINGS = {
    # Report only failures: a Python callback per acknowledged message halved throughput.
    # Every message still has a known outcome: once flush() has emptied the queue, each one
    # was either acknowledged or reported failed (see StreamProducer.flush).
    "delivery.report.only.error": True,
    "compression.type": "zstd",
    "linger.ms": 20,
    # A dead broker must fail the flush in bounded time, not hang the task.
    "message.timeout.ms": 30_000,
    "socket.connection.setup.timeout.ms": 10_000,
}


# Delivery reports (failures only) are served every this many messages, not after each one:
# librdkafka sends from its own threads, a full queue is waited out by polling, and flush()
# serves the rest: a poll(0) per message would mostly find nothing to serve.
POLL_EVERY = 64

class DeliveryFailed(RuntimeError):
    """Some messages were not acknowledged by Kafka; nothing may be treated as delivered."""


class DeliveryReport:
    """The delivery callback: counts failed (and, if reported, acknowledged) messages, keeps the first errors."""

    def __init__(self) -> None:
        self.produced = 0
        self.delivered = 0
        self.failed = 0
        self.errors: list[str] = []

    def __call__(self, err: KafkaError | None, msg) -> None:
        if err is not None:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"{msg.topic()}: {err}")
        else:
            self.delivered += 1

    @property
    def pending(self) -> int:
        return self.produced - self.delivered - self.failed

    def __repr__(self) -> str:
        return (f"DeliveryReport(produced={self.produced}, delivered={self.delivered}, "
                f"failed={self.failed}, pending={self.pending})")


def producer_config(kafka_config: Mapping[str, Any], **overrides: Any) -> dict:
    """librdkafka settings: the given ones (at least `bootstrap.servers`) plus ours on top."""
    conf = {**DEFAULT_SETTINGS, **dict(kafka_config), **overrides, **REQUIRED_SETTINGS}
    return conf


class StreamProducer:
    """Validates, serializes, keys and produces messages of the four streams.

    `topics` maps a contract topic (e.g. `spotify.plays`) to the real topic name,
    so tests can use their own topics. One report per instance; `flush()` checks it.
    """

    def __init__(self, kafka_config: Mapping[str, Any], topics: Mapping[str, str] | None = None,
                 producer: Producer | None = None) -> None:
        self.topics = dict(topics or {})
        conf = producer_config(kafka_config)
        self.report = DeliveryReport()
        # The report is the producer's own delivery callback: handed to produce() with every
        # message instead, it cost the client a per-message allocation (our path: 0.54 of a bare
        # loop's messages per second, 0.8 wanted). An injected producer (tests) reports nothing.
        self.producer = producer or Producer({**conf, "on_delivery": self.report})
        self.successes_reported = not conf.get("delivery.report.only.error")
        # Looked up once here, not per message (send() is the hot path): each contract topic's
        # real topic and key field, the encoder (one per producer: none shared across threads).
        self._routes = {topic: (self.topics.get(topic, topic), stream.key)
                        for topic, stream in contracts.STREAMS.items()}
        self._encode = msgspec.json.Encoder().encode
        self._produce = self.producer.produce

    def send(self, topic: str, message: Mapping[str, Any], validated: bool = False) -> None:
        """Produce one message of contract `topic`.

        Validated here unless `validated=True` says it was built by a contract-validating
        function (`spotify.payloads`, `history_import`), which is how ingestion calls it.
        Kept lean: this runs once per message (see bench/producer_throughput.py).
        """
        value = message if validated else contracts.validate(topic, message)
        target, key_field = self._routes[topic]
        data = self._encode(value)
        # Every key field is a required string: the client encodes it as UTF-8 itself.
        key = value[key_field]
        try:
            self._produce(target, data, key)
        except BufferError:
            self._produce_when_room(target, data, key)
        report = self.report
        report.produced += 1
        if report.produced % POLL_EVERY == 0:
            self.producer.poll(0)

    def _produce_when_room(self, target: str, data: bytes, key: str) -> None:
        while True:
            # The local queue is full: serve delivery reports to make room, then retry.
            self.producer.poll(0.5)
            try:
                self.producer.produce(target, data, key)
                return
            except BufferError:
                continue

    def send_all(self, items: Iterable[tuple[str, Mapping[str, Any]]], validated: bool = False) -> None:
        for topic, message in items:
            self.send(topic, message, validated)

    def flush(self, timeout_s: float = 60.0) -> DeliveryReport:
        """Wait for every delivery report; raise DeliveryFailed unless all were acknowledged."""
        remaining = self.producer.flush(timeout_s)
        report = self.report
        if remaining == 0 and not self.successes_reported:
            # The queue is empty and failures were reported: everything else was acknowledged.
            report.delivered = report.produced - report.failed
        if report.failed or remaining or report.pending:
            raise DeliveryFailed(f"Kafka did not acknowledge every message: {report!r}, "
                                 f"still queued {remaining}; first errors: {report.errors}")
        return report
