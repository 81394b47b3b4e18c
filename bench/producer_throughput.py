"""Messages per second of our producer path vs a bare confluent-kafka loop, same run, same broker.

    python bench/producer_throughput.py [--messages 200000] [--rounds 3]

Both produce the same pre-built `spotify.plays` messages with the same librdkafka settings
(`producer.producer_config`: idempotence, acks=all, compression) to a throw-away topic on the
stack that `wrapped up` starts, and both end with `flush()`. The bare loop sends pre-serialized
bytes; ours is `StreamProducer.send(..., validated=True)` + `flush()` exactly as ingestion calls
it (messages are validated once, when `spotify.payloads` builds them, so "pre-built" means
validated): it serializes and keys each message and checks every delivery report. A third
figure, re-validating inside `send()`, is printed for information. Rounds alternate; the
median of each counts.
The last line is `producer_throughput: ratio=<ours / bare> (target >= 0.8)`.
"""

from __future__ import annotations

import argparse
import time
import uuid
from statistics import median

import msgspec
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from weekly_wrapped import contracts
from wrapped_dev.config import load_settings
from weekly_wrapped.ingest.producer import StreamProducer, producer_config

TARGET = 0.8


def build_messages(n: int) -> list[dict]:
    """Realistic plays: 300 users, a few thousand tracks, contexts, validated once up front."""
    start = 1_795_000_000_000
    out = []
    for i in range(n):
        out.append(contracts.validate(contracts.PLAYS_TOPIC, {
            "user_id": f"bench-user-{i % 300:03d}",
            "played_at": start + i * 1_000,
            "track_id": f"{i % 4_000:022d}",
            "context_uri": f"spotify:album:{i % 900:022d}" if i % 3 else None,
            "source": "api",
            "ms_played": None,
            "ingested_at": start + n * 1_000,
        }))
    return out


def bare_loop(conf: dict, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """The reference: confluent-kafka's own example loop (produce, poll(0), BufferError retry, flush)."""
    p = Producer(conf)
    p.produce(topic, b"warm-up", b"warm-up")  # connection and producer id outside the timing
    p.flush(30)
    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.5)
        p.poll(0)
    left = p.flush(120)
    elapsed = time.perf_counter() - started
    assert left == 0, f"bare loop: {left} messages not delivered"
    return len(records) / elapsed


def our_path(kafka_config: dict, topic: str, messages: list[dict], validated: bool = True) -> float:
    """As ingestion produces: `send(..., validated=True)` (payloads built and validated them) + flush."""
    sp = StreamProducer(kafka_config, topics={contracts.PLAYS_TOPIC: topic})
    sp.producer.produce(topic, b"warm-up", b"warm-up")
    sp.producer.flush(30)
    started = time.perf_counter()
    for m in messages:
        sp.send(contracts.PLAYS_TOPIC, m, validated)
    report = sp.flush(120)
    elapsed = time.perf_counter() - started
    assert report.delivered == len(messages) and report.failed == 0, report
    return len(messages) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    settings = load_settings()
    kafka_config = {"bootstrap.servers": settings.kafka_bootstrap}
    conf = producer_config(kafka_config)
    topic = f"bench.producer-throughput.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka_config)
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    try:
        messages = build_messages(args.messages)
        # The bare loop's records, keyed and encoded as StreamProducer.send does (by user, compact JSON).
        records = [(str(m["user_id"]).encode(), msgspec.json.encode(m)) for m in messages]
        print(f"{args.messages} messages of ~{sum(len(v) for _, v in records) // len(records)} bytes, "
              f"settings: idempotence={conf['enable.idempotence']} acks={conf['acks']} "
              f"compression={conf['compression.type']} linger.ms={conf['linger.ms']}", flush=True)
        bare, ours, checked = [], [], []
        for r in range(args.rounds):
            bare.append(bare_loop(conf, topic, records))
            ours.append(our_path(kafka_config, topic, messages))
            checked.append(our_path(kafka_config, topic, messages, validated=False))
            print(f"round {r + 1}: bare {bare[-1]:,.0f} msg/s, ours {ours[-1]:,.0f} msg/s, "
                  f"ours re-validating {checked[-1]:,.0f} msg/s", flush=True)
        # Medians: a single lucky round of either side must not decide the ratio.
        best_bare, best_ours, best_checked = median(bare), median(ours), median(checked)
        print(f"bare confluent-kafka loop:                {best_bare:,.0f} msg/s (median of {args.rounds})")
        print(f"our producer path (as ingestion uses it): {best_ours:,.0f} msg/s (median of {args.rounds})")
        print(f"our path validating again in send():      {best_checked:,.0f} msg/s "
              f"(ratio {best_checked / best_bare:.2f}, for information)")
    finally:
        admin.delete_topics([topic])[topic].result(30)
    print(f"producer_throughput: ratio={best_ours / best_bare:.2f} (target >= {TARGET})")


if __name__ == "__main__":
    main()
