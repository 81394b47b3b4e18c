# Airflow image for docker-compose.yaml: Airflow 3 + our package + Java (Spark driver) + dbt's own venv.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven curl \
 && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow requirements.txt requirements-dbt.txt pyproject.toml /opt/wrapped/
COPY --chown=airflow include /opt/wrapped/include
RUN pip install --no-cache-dir -r /opt/wrapped/requirements.txt -e /opt/wrapped \
 && python -m venv /opt/dbt-venv \
 && /opt/dbt-venv/bin/pip install --no-cache-dir -r /opt/wrapped/requirements-dbt.txt
ENV PYSPARK_PYTHON=/home/airflow/.local/bin/python
WORKDIR /opt/wrapped
