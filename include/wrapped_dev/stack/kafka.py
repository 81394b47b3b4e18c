"""Apache Kafka 4 in KRaft mode, from Maven Central jars: one node, or a cluster of three.

`ensure_jars` copies the broker's jars into the state folder (resolved with Maven once per
machine, into the cache the consumer's jars share); each node's
storage is formatted once; each node runs as `java -cp lib/* kafka.Kafka`, a service of
its own (`kafka`, `kafka-2`, `kafka-3`). With `WRAPPED_KAFKA_BROKERS=3` every node is
broker and controller at once (three voters: the quorum survives one lost node), and
topics, internal ones included, get replication factor 3 and `min.insync.replicas=2`:
with the producer's acks=all, an acknowledged message is on at least two nodes, so one
node may die without losing it, and producing goes on with the two left.
Topics from DESIGN.md are created with explicit partitions and retention.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from weekly_wrapped import contracts
from weekly_wrapped.streaming.process import Service, port_open, wait_until
from wrapped_dev.config import Settings, kafka_node_ports

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


def replication_factor(brokers: int) -> int:
    """Copies of each partition: three where there are three brokers, else as many as there are."""
    return min(3, brokers)


def min_insync_replicas(replication: int) -> int:
    """Copies an acks=all write needs: two of three, so one broker may be down and writes go on."""
    return min(2, replication)


@dataclass(frozen=True)
class Node:
    """One KRaft node of the local stack (broker and controller in one process)."""

    node_id: int
    port: int
    controller_port: int
    root: Path  # server.properties, log4j2.properties, data/
    service: Service

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def nodes(settings: Settings) -> list[Node]:
    """The stack's nodes. One node keeps the layout of before (`kafka/`, service `kafka`);
    with more, node i lives in `kafka/node-i/` and runs as service `kafka-i` (node 1: `kafka`)."""
    run, logs = settings.state_dir / "run", settings.state_dir / "logs"
    ports = kafka_node_ports(settings.kafka_port, settings.kafka_controller_port, settings.kafka_brokers)
    return [
        Node(i, port, controller_port,
             home(settings) if settings.kafka_brokers == 1 else home(settings) / f"node-{i}",
             Service("kafka" if i == 1 else f"kafka-{i}", run, logs))
        for i, (port, controller_port) in enumerate(ports, start=1)
    ]


def local_bootstrap(settings: Settings) -> str:
    """Every node of the stack's own Kafka (WRAPPED_KAFKA_BOOTSTRAP may point elsewhere)."""
    return ",".join(node.address for node in nodes(settings))


def service(settings: Settings) -> Service:
    return nodes(settings)[0].service


def ensure_jars(settings: Settings) -> Path:
    """The broker's jars in the state folder, copied from the machine's cache (resolved there
    with Maven once per machine and pom, as the consumer's are)."""
    from weekly_wrapped.streaming.jars import resolve_once

    target = jar_dir(settings)
    marker = target / ".complete"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        for jar in resolve_once(POM, "kafka-jars").glob("*.jar"):
            shutil.copy2(jar, target / jar.name)
        marker.write_text(POM.read_text())
    return target


def _write_config(settings: Settings, node: Node) -> Path:
    all_nodes = nodes(settings)
    replication = replication_factor(len(all_nodes))
    min_isr = min_insync_replicas(replication)
    if len(all_nodes) == 1:
        # A dynamic quorum of one (formatted with --standalone), as the stack always had.
        quorum = f"controller.quorum.bootstrap.servers=127.0.0.1:{node.controller_port}"
    else:
        # A static quorum: every node votes, any two of three elect the active controller.
        quorum = "controller.quorum.voters=" + ",".join(
            f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in all_nodes)
    node.root.mkdir(parents=True, exist_ok=True)
    config = node.root / "server.properties"
    config.write_text(
        "\n".join([
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            quorum,
            f"listeners=PLAINTEXT://{node.address},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://{node.address}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={node.root / 'data'}",
            "num.partitions=1",
            # Topics created without explicit settings, and Kafka's internal ones, replicate too.
            f"default.replication.factor={replication}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replication}",
            f"transaction.state.log.replication.factor={replication}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={replication}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "",
        ])
    )
    (node.root / "log4j2.properties").write_text(
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


def _java(settings: Settings, node: Node, main: str, *args: str, heap: str = "512m") -> list[str]:
    return [
        "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={node.root / 'log4j2.properties'}",
        "-cp", f"{jar_dir(settings)}/*", main, *args,
    ]


def is_external(settings: Settings) -> bool:
    """WRAPPED_KAFKA_BOOTSTRAP names a cluster of one's own: the stack runs no broker then."""
    return settings.kafka_bootstrap != local_bootstrap(settings)


def is_running(settings: Settings) -> bool:
    """Every node answers on its port."""
    return all(port_open("127.0.0.1", node.port) for node in nodes(settings))


def status_rows(settings: Settings) -> list[tuple[str, bool, str]]:
    """(name, answers, where) per node for `wrapped status`; one row for a cluster of one's own."""
    if is_external(settings):
        return [("kafka (yours)", _brokers_registered(settings.kafka_bootstrap) > 0, settings.kafka_bootstrap)]
    return [(node.service.name, port_open("127.0.0.1", node.port), node.address) for node in nodes(settings)]


def start(settings: Settings) -> None:
    """Start the nodes that are not running (all of them, or one that died), then the topics.
    On a cluster of one's own (WRAPPED_KAFKA_BOOTSTRAP), only create the missing topics there."""
    from weekly_wrapped.streaming import process

    if is_external(settings):
        create_topics(settings.kafka_bootstrap)
        return
    ensure_jars(settings)
    all_nodes = nodes(settings)
    configs = {node.node_id: _write_config(settings, node) for node in all_nodes}
    unformatted = [node for node in all_nodes if not (node.root / "data" / "meta.properties").exists()]
    if unformatted:
        # Every node of a cluster carries the same cluster id: kept beside the nodes, so a node
        # formatted later (its data folder lost) joins the same cluster.
        id_file = home(settings) / "cluster.id"
        if not id_file.exists():
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(_cluster_id())
        cluster_id = id_file.read_text().strip()
        standalone = ["--standalone"] if len(all_nodes) == 1 else []
        # All at once: each format is a JVM start of a few seconds.
        formats = {
            node.node_id: subprocess.Popen(
                _java(settings, node, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                      "-c", str(configs[node.node_id]), *standalone, "--ignore-formatted", heap="128m"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            for node in unformatted
        }
        for node_id, proc in formats.items():
            output, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"formatting Kafka's storage (node {node_id}) failed:\n{output[-4000:]}")
    for node in all_nodes:
        if not port_open("127.0.0.1", node.port):
            process.start(node.service, _java(settings, node, "kafka.Kafka", str(configs[node.node_id])),
                          os.environ)
    bootstrap = local_bootstrap(settings)
    # A node that exits (a port taken, a bad config) fails the start with its log's tail.
    for node in all_nodes:
        wait_until(lambda: port_open("127.0.0.1", node.port), f"Kafka node {node.node_id}", 90, node.service)
    wait_until(lambda: _brokers_registered(bootstrap) >= len(all_nodes),
               f"{len(all_nodes)} Kafka broker(s) registered", 90)
    create_topics(bootstrap, replication_factor(len(all_nodes)))


def _cluster_id() -> str:
    # KRaft cluster ids are 16 random bytes, URL-safe base64 without padding.
    import base64

    # One starting with "-" would be read as an option by kafka-storage, as Kafka's own
    # Uuid.randomUuid() also avoids.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _brokers_registered(bootstrap: str) -> int:
    """Brokers the cluster's metadata lists (0 while none answers)."""
    from confluent_kafka.admin import AdminClient

    try:
        return len(AdminClient(_admin_config(bootstrap)).list_topics(timeout=2).brokers)
    except Exception:
        return 0


def _admin_config(bootstrap: str) -> dict:
    # librdkafka's informational lines would interleave with `wrapped up`'s progress.
    return {"bootstrap.servers": bootstrap, "log_level": 3}


def create_topics(bootstrap: str, replication: int | None = None) -> None:
    """Create the topics that do not exist yet. Replication factor: `replication`, or by
    default as many copies as the cluster's brokers allow (up to 3); `min.insync.replicas`
    two where there are three copies (`wrapped create-topics` on an existing cluster)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(_admin_config(bootstrap))
    metadata = admin.list_topics(timeout=10)
    replication = replication or replication_factor(len(metadata.brokers))
    wanted = [
        NewTopic(topic, num_partitions=partitions, replication_factor=replication,
                 config={"retention.ms": str(RETENTION_MS), "compression.type": "producer",
                         "min.insync.replicas": str(min_insync_replicas(replication))})
        for topic, partitions in TOPIC_PARTITIONS.items() if topic not in metadata.topics
    ]
    for topic, future in (admin.create_topics(wanted) if wanted else {}).items():
        future.result()
    # Created is not yet served: the brokers learn of a topic, and elect its leaders, a moment
    # later, each in its own time. Asked through one address, the client asks that broker first.
    for address in bootstrap.split(","):
        one = AdminClient(_admin_config(address))
        wait_until(lambda: _topics_served(one), f"the topics' partition leaders (as {address} serves them)", 60)


def _topics_served(admin) -> bool:
    topics = admin.list_topics(timeout=10).topics
    return all(
        name in topics and topics[name].error is None and len(topics[name].partitions) == partitions
        and all(p.leader >= 0 and p.error is None for p in topics[name].partitions.values())
        for name, partitions in TOPIC_PARTITIONS.items()
    )


def stop(settings: Settings) -> bool:
    """Stop every node (by process group), all at once; True if any was running.

    One after the other, the last node standing has lost its controller quorum: it cannot
    finish a clean shutdown and waits out the timeout (30 s) before it is killed."""
    from concurrent.futures import ThreadPoolExecutor

    from weekly_wrapped.streaming import process

    all_nodes = nodes(settings)
    with ThreadPoolExecutor(len(all_nodes)) as pool:
        stopped = list(pool.map(lambda node: process.stop(node.service, timeout=30), all_nodes))
    return any(stopped)
