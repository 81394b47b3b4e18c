"""Topics of a test's own on a shared Kafka broker, named with a unique suffix and deleted afterwards."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import contextmanager
from typing import Iterator, Mapping

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# Partitions of the real topics (wrapped_dev.stack.kafka), by stream.
PARTITIONS = {"plays": 3, "tracks": 1, "albums": 1, "artists": 1}


def create_topics(bootstrap: str, partitions: Mapping[str, int], timeout: float = 30) -> None:
    """Create topics {name: partitions} (replication factor 1) and wait until they exist."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=n, replication_factor=1)
                                   for name, n in partitions.items()])
    for future in futures.values():
        future.result(timeout)
    # Created is not yet served: until each partition has a leader, reads of it fail with
    # NOT_LEADER_FOR_PARTITION (seen on a busy machine).
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=10).topics
        if all(name in topics and topics[name].error is None and len(topics[name].partitions) == n
               and all(p.leader >= 0 and p.error is None for p in topics[name].partitions.values())
               for name, n in partitions.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without a leader after {timeout} s: {sorted(partitions)}")
        time.sleep(0.1)


def delete_topics(bootstrap: str, names) -> None:
    """Delete the topics; ones already gone (or a broker already down) are fine."""
    names = list(names)
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(names, operation_timeout=30).values():
        try:
            future.result(30)
        except Exception:
            pass


def create_stream_topics(bootstrap: str, prefix: str = "test.", names: Mapping[str, str] | None = None,
                         partitions: Mapping[str, int] | int | None = None) -> dict[str, str]:
    """Fresh topics, returned as {key: topic name}; the caller deletes them (`delete_topics`).

    `names` gives the topic names ({key: name}); by default one per stream,
    `{prefix}{stream}.<suffix>`, with the real topics' partitions. `partitions` is one
    number for all, or per key (1 for a key it does not list).
    """
    if names is None:
        suffix = uuid.uuid4().hex[:8]
        names = {s: f"{prefix}{s}.{suffix}" for s in PARTITIONS}
    if isinstance(partitions, int):
        counts = {key: partitions for key in names}
    else:
        counts = {key: (partitions or PARTITIONS).get(key, 1) for key in names}
    create_topics(bootstrap, {names[key]: counts[key] for key in names})
    return dict(names)


@contextmanager
def private_topics(bootstrap: str, prefix: str = "test.", names: Mapping[str, str] | None = None,
                   partitions: Mapping[str, int] | int | None = None) -> Iterator[dict[str, str]]:
    """`create_stream_topics` as a context: the topics are deleted when it ends."""
    topics = create_stream_topics(bootstrap, prefix, names, partitions)
    try:
        yield topics
    finally:
        delete_topics(bootstrap, topics.values())


def read_topic(bootstrap: str, name: str) -> list[dict]:
    """Every JSON message of a one-partition topic, in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=10)
        if high == 0:
            return []
        consumer.assign([TopicPartition(name, 0, 0)])
        out = []
        while True:
            msg = consumer.poll(10)
            assert msg is not None, f"timed out reading {name}"
            assert msg.error() is None, msg.error()
            out.append(json.loads(msg.value()))
            if msg.offset() >= high - 1:
                return out
    finally:
        consumer.close()
