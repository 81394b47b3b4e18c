"""The jars the Spark consumer adds to PySpark: the Kafka connector, the PostgreSQL driver, and
our own parse fast path (`spark/udf`, compiled here with the JDK's javac against PySpark's jars).

Resolved once per machine from Maven Central with `spark/jars/pom.xml` (into
`~/.cache/weekly-wrapped/spark-jars/<pom hash>/`, the fast path compiled beside them) and
copied into the consumer's jars folder, so later runs and fresh clones need no Maven or javac.
A stamp file holds the hash of the pom and our Java sources: editing either rebuilds, anything
else is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from weekly_wrapped import PROJECT_ROOT

POM = PROJECT_ROOT / "spark" / "jars" / "pom.xml"
UDF_SOURCES = PROJECT_ROOT / "spark" / "udf"
UDF_JAR = "weekly-wrapped-udf.jar"

# PySpark already ships these (or a version of them); two copies on the classpath
# means whichever loads first wins, so leave them out.
_SHIPPED_BY_PYSPARK = (
    "hadoop-client-",
    "scala-library",
    "scala-parallel-collections",
    "slf4j-api",
    "snappy-java",
    "lz4-java",
    "jsr305",
    "spark-tags",
    "checker-qual",
)


def _java_sources() -> list[Path]:
    return sorted(UDF_SOURCES.rglob("*.java"))


def _stamp() -> str:
    digest = hashlib.sha256(POM.read_bytes())
    for source in _java_sources():
        digest.update(source.relative_to(UDF_SOURCES).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def spark_jars(target: Path) -> list[Path]:
    """The jar files for `spark.jars` (empty if not resolved yet)."""
    return sorted(target.glob("*.jar"))


def machine_cache(pom: Path = POM, kind: str = "spark-jars") -> Path:
    """Jars resolved once per machine and pom, shared by every checkout (a fresh clone starts
    without a Maven run, which costs 5 to 10 s even when ~/.m2 has everything)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "weekly-wrapped" / kind / hashlib.sha256(pom.read_bytes()).hexdigest()


def resolve_once(pom: Path, kind: str, keep=lambda jar_name: True) -> Path:
    """The folder of `pom`'s runtime jars (those `keep` accepts) in the machine's cache,
    resolved with Maven the first time."""
    cache = machine_cache(pom, kind)
    if not (cache / ".complete").exists():
        _resolve_into(cache, pom, keep)
    return cache


def ensure_spark_jars(target: Path) -> list[Path]:
    """Resolve the consumer's jars with Maven unless already cached; return their paths."""
    stamp = target / ".sources-sha256"
    if stamp.exists() and stamp.read_text().strip() == _stamp() and spark_jars(target):
        return spark_jars(target)
    target.mkdir(parents=True, exist_ok=True)
    cache = resolve_once(POM, "spark-jars", keep=lambda name: not name.startswith(_SHIPPED_BY_PYSPARK))
    for old in target.glob("*.jar"):
        old.unlink()
    for jar in cache.glob("*.jar"):
        shutil.copy2(jar, target / jar.name)
    # Compiled once per machine too, for these sources and this PySpark (javac: 2 to 3 s).
    import pyspark

    udf = cache / f"udf-{hashlib.sha256((_stamp() + pyspark.__version__).encode()).hexdigest()[:16]}"
    if not (udf / UDF_JAR).exists():
        build_udf_jar(udf)
    shutil.copy2(udf / UDF_JAR, target / UDF_JAR)
    stamp.write_text(_stamp())
    return spark_jars(target)


def build_udf_jar(target: Path) -> Path:
    """Compile `spark/udf` against PySpark's own jars into `target`/weekly-wrapped-udf.jar (~2 s)."""
    import importlib.util

    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if not (javac and jar_tool):
        raise RuntimeError("javac and jar not found: the consumer's parse fast path needs a JDK "
                           "(Debian: openjdk-17-jdk-headless; scripts/bootstrap.sh installs it)")
    pyspark_jars = Path(importlib.util.find_spec("pyspark").origin).parent / "jars"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as classes:
        subprocess.run([javac, "--release", "17", "-nowarn", "-cp", f"{pyspark_jars}/*", "-d", classes,
                        *map(str, _java_sources())], check=True)
        built = target / f".{UDF_JAR}.tmp"
        subprocess.run([jar_tool, "cf", str(built), "-C", classes, "."], check=True)
        built.replace(target / UDF_JAR)  # whole or not at all: a Spark reading the folder sees no half jar
    return target / UDF_JAR


def _resolve_into(cache: Path, pom: Path, keep) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
            ],
            check=True,
        )
        for jar in Path(tmp).glob("*.jar"):
            if keep(jar.name):
                shutil.copy2(jar, cache / jar.name)
    (cache / ".complete").touch()  # last: a resolution cut short is redone
