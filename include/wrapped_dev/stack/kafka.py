"""A single Apache Kafka 4 broker in KRaft mode, from Maven Central jars.

`ensure_jars` resolves the broker once into the state folder (mvn, cached);
storage is formatted once; the broker runs as `java -cp lib/* kafka.Kafka`.
Topics from DESIGN.md are created with explicit partitions and retention.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from weekly_wrapped import contracts
from wrapped_dev.config import Settings
from weekly_wrapped.streaming.process import Service, port_open, wait_until

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"

# Partitions sized for a few hundred users on a small machine; retention long enough
# that a consumer can be rebuilt from `earliest` after losing its checkpoint.
TOPIC_PARTITIONS = {
    contracts.PLAYS_TOPIC: 3,
    contracts.TRACKS_TOPIC: 1,
    contracts.ALBUMS_TOPIC: 1,
    contracts.ARTISTS_TOPIC: 1,
}
RETENTION_MS = int(os.environ.get("WRAPPED_KAFKA_RETENTION_MS", str(30 * 24 * 3600 * 1000)))


def home(settings: Settings) -> Path:
    return settings.state_dir / "kafka"


def jar_dir(settings: Settings) -> Path:
    return settings.state_dir / "jars" / "kafka"


def service(settings: Settings) -> Service:
    return Service("kafka", settings.state_dir / "run", settings.state_dir / "logs")


def ensure_jars(settings: Settings) -> Path:
    target = jar_dir(settings)
    marker = target / ".complete"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={target}"],
            check=True,
        )
        marker.write_text(POM.read_text())
    return target


def _write_config(settings: Settings) -> Path:
    root = home(settings)
    root.mkdir(parents=True, exist_ok=True)
    config = root / "server.properties"
    config.write_text(
        "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{settings.kafka_controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port},CONTROLLER://127.0.0.1:{settings.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{settings.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={root / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "",
        ])
    )
    (root / "log4j2.properties").write_text(
        "\n".join([
            "rootLogger.level=INFO",
            "rootLogger.appenderRef.stdout.ref=STDOUT",
            "appender.stdout.type=Console",
            "appender.stdout.name=STDOUT",
            "appender.stdout.layout.type=PatternLayout",
            "appender.stdout.layout.pattern=[%d] %p %m (%c)%n",
            "logger.kafka.name=kafka",
            "logger.kafka.level=WARN",
            "logger.state.name=state.change.logger",
            "logger.state.level=WARN",
            "",
        ])
    )
    return config


def _java(settings: Settings, main: str, *args: str, heap: str = "512m") -> list[str]:
    root = home(settings)
    return [
        "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
        "-cp", f"{jar_dir(settings)}/*", main, *args,
    ]


def is_running(settings: Settings) -> bool:
    return port_open("127.0.0.1", settings.kafka_port)


def start(settings: Settings) -> None:
    ensure_jars(settings)
    config = _write_config(settings)
    if not (home(settings) / "data" / "meta.properties").exists():
        cluster_id = _cluster_id()
        result = subprocess.run(
            _java(settings, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
                  "--standalone", "--ignore-formatted", heap="128m"),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka's storage failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    svc = service(settings)
    if not is_running(settings):
        from weekly_wrapped.streaming import process

        process.start(svc, _java(settings, "kafka.Kafka", str(config)), os.environ)
    wait_until(lambda: _broker_ready(settings), "the Kafka broker", 90, svc)
    create_topics(settings.kafka_bootstrap)


def _cluster_id() -> str:
    # KRaft cluster ids are 16 random bytes, URL-safe base64 without padding.
    import base64

    # One starting with "-" would be read as an option by kafka-storage, as Kafka's own
    # Uuid.randomUuid() also avoids.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _broker_ready(settings: Settings) -> bool:
    if not is_running(settings):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(_admin_config(settings.kafka_bootstrap)).list_topics(timeout=2)
        return True
    except Exception:
        return False


def _admin_config(bootstrap: str) -> dict:
    # librdkafka's informational lines would interleave with `wrapped up`'s progress.
    return {"bootstrap.servers": bootstrap, "log_level": 3}


def create_topics(bootstrap: str, replication_factor: int = 1) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(_admin_config(bootstrap))
    existing = admin.list_topics(timeout=10).topics
    wanted = [
        NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                 config={"retention.ms": str(RETENTION_MS), "compression.type": "producer"})
        for topic, partitions in TOPIC_PARTITIONS.items() if topic not in existing
    ]
    for topic, future in (admin.create_topics(wanted) if wanted else {}).items():
        future.result()


def stop(settings: Settings) -> bool:
    from weekly_wrapped.streaming import process

    return process.stop(service(settings), timeout=30)
