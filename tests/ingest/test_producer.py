"""The producer on the real broker: every delivery checked, a full local queue waited out."""

import json
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from weekly_wrapped import contracts
from weekly_wrapped.ingest.producer import DeliveryFailed, StreamProducer, producer_config

from tests.support import messages
from tests.support.kafka import private_topics


def play(i):
    return messages.play(f"u{i % 3}", i)


class Wire:
    """Stands in for confluent_kafka.Producer: keeps what `StreamProducer` hands to librdkafka."""

    def __init__(self):
        self.produced = []

    def produce(self, topic, value, key, on_delivery=None):
        self.produced.append((topic, key, value))

    def poll(self, timeout=0):
        return 0


def test_safety_settings_cannot_be_weakened():
    conf = producer_config({"bootstrap.servers": "x:1", "acks": "1", "enable.idempotence": False,
                            "compression.type": "lz4"})
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True
    assert conf["compression.type"] == "lz4"  # tuning stays configurable


def test_send_produces_compact_json_with_schema_version_first_keyed_by_the_contract():
    wire = Wire()
    p = StreamProducer({"bootstrap.servers": "unused:9092"}, topics={contracts.PLAYS_TOPIC: "my.plays"}, producer=wire)
    unordered = dict(reversed(list(play(1).items())))  # field order on the wire is the contract's, not the caller's
    p.send_all([(contracts.PLAYS_TOPIC, unordered),
                (contracts.TRACKS_TOPIC, messages.track("t7", 5, name="Ünïcode"))])
    (plays_topic, plays_key, plays_value), (tracks_topic, tracks_key, tracks_value) = wire.produced
    assert (plays_topic, plays_key) == ("my.plays", "u1")  # the client encodes a str key as UTF-8
    assert plays_value == (b'{"schema_version":1,"user_id":"u1","played_at":1763000001000,"track_id":"track-1",'
                           b'"context_uri":null,"source":"api","ms_played":null,"ingested_at":1763100000000,'
                           b'"reason_end":null,"shuffle":null,"offline":null}')
    assert (tracks_topic, tracks_key) == (contracts.TRACKS_TOPIC, "t7")
    assert json.loads(tracks_value)["name"] == "Ünïcode" and tracks_value.startswith(b'{"schema_version":1,')
    assert p.report.produced == 2


def test_invalid_messages_are_refused_before_producing():
    p = StreamProducer({"bootstrap.servers": "127.0.0.1:1"})
    with pytest.raises(contracts.InvalidMessage):
        p.send(contracts.PLAYS_TOPIC, {**play(1), "source": "radio"})
    assert p.report.produced == 0


def test_full_local_queue_is_waited_out_and_every_message_acknowledged(kafka):
    kafka_bootstrap = kafka.bootstrap
    with private_topics(kafka_bootstrap, names={"plays": f"t{uuid.uuid4().hex[:8]}-{contracts.PLAYS_TOPIC}"},
                        partitions=2) as topics:
        topic = topics["plays"]
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
        assert set(keys) == {b"u0", b"u1", b"u2"}  # keyed by user, the key's UTF-8 bytes on the wire
        assert all(len(parts) == 1 for parts in keys.values())


def test_undelivered_messages_fail_the_flush():
    p = StreamProducer({"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1000})
    p.send(contracts.PLAYS_TOPIC, play(1))
    with pytest.raises(DeliveryFailed, match="failed=1"):
        p.flush(10)
