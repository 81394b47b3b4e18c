"""The producer on the real broker: every delivery checked, a full local queue waited out."""

import json
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from weekly_wrapped import contracts
from weekly_wrapped.ingest.producer import DeliveryFailed, StreamProducer, producer_config, serialize


def play(i):
    return {"user_id": f"u{i % 3}", "played_at": 1_795_000_000_000 + i, "track_id": f"t{i}", "context_uri": None,
            "source": "api", "ms_played": None, "ingested_at": 1_795_000_100_000}


def test_safety_settings_cannot_be_weakened():
    conf = producer_config({"bootstrap.servers": "x:1", "acks": "1", "enable.idempotence": False,
                            "compression.type": "lz4"})
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True
    assert conf["compression.type"] == "lz4"  # tuning stays configurable


def test_serialization_is_compact_json_with_schema_version_first():
    value = contracts.validate(contracts.PLAYS_TOPIC, play(1))
    assert serialize(value) == json.dumps(value, separators=(",", ":")).encode()
    assert serialize(value).startswith(b'{"schema_version":1,')


def test_invalid_messages_are_refused_before_producing():
    p = StreamProducer({"bootstrap.servers": "127.0.0.1:1"})
    with pytest.raises(contracts.InvalidMessage):
        p.send(contracts.PLAYS_TOPIC, {**play(1), "source": "radio"})
    assert p.report.produced == 0


def test_full_local_queue_is_waited_out_and_every_message_acknowledged(stack, kafka_bootstrap):
    topic = f"t{uuid.uuid4().hex[:8]}-{contracts.PLAYS_TOPIC}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    try:
        # A 50-message local queue: producing 2,000 hits BufferError again and again.
        p = StreamProducer({"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": 50},
                           topics={contracts.PLAYS_TOPIC: topic})
        p.send_all((contracts.PLAYS_TOPIC, play(i)) for i in range(2_000))
        report = p.flush(30)
        assert (report.produced, report.delivered, report.failed, report.pending) == (2_000, 2_000, 0, 0)

        c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex})
        keys = {}
        for partition in (0, 1):
            _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            c.assign([TopicPartition(topic, partition, 0)])
            for _ in range(high):
                msg = c.poll(10)
                keys.setdefault(msg.key(), set()).add(msg.partition())
        c.close()
        assert sum(1 for _ in keys) == 3 and all(len(parts) == 1 for parts in keys.values())  # keyed by user
    finally:
        admin.delete_topics([topic])[topic].result(30)


def test_undelivered_messages_fail_the_flush():
    p = StreamProducer({"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1000})
    p.send(contracts.PLAYS_TOPIC, play(1))
    with pytest.raises(DeliveryFailed, match="failed=1"):
        p.flush(10)
