"""docker-compose.yaml is validated here, since no Docker engine runs on this machine."""

import re
from pathlib import Path

import pytest
import yaml

from wrapped_dev.config import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|FERNET|API_KEY|TOKEN", re.I)


def test_has_every_component_of_the_stack():
    expected = {"postgres", "kafka", "spark-master", "spark-worker", "airflow-init", "airflow-apiserver",
                "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "mailpit"}
    assert expected <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_image_or_build_and_healthcheck(name):
    service = SERVICES[name]
    assert "image" in service or "build" in service
    assert "healthcheck" in service and service["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_hard_coded_secrets(name):
    env = SERVICES[name].get("environment", {})
    items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
    for key, value in items:
        if SECRET_WORDS.search(key):
            assert "${" in str(value), f"{name}: {key} must come from .env, not the file"
        for m in re.finditer(r"(password|secret)\"?\s*:\s*\"([^\"]*)\"", str(value), re.I):
            assert m.group(2) == "" or m.group(2).startswith("${"), f"{name}: {key} embeds a secret"


def test_kafka_runs_in_kraft_mode():
    env = SERVICES["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "KAFKA_ZOOKEEPER_CONNECT" not in env


def test_depends_on_refer_to_defined_services_and_build_files_exist():
    for name, service in SERVICES.items():
        deps = service.get("depends_on", {})
        assert set(deps) <= set(SERVICES), name
        if "build" in service:
            build = service["build"]
            assert (REPO_ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).exists()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"


def test_env_example_names_every_variable_compose_requires():
    required = set(re.findall(r"\$\{(\w+):\?", (REPO_ROOT / "docker-compose.yaml").read_text()))
    example = (REPO_ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, re.M))
    assert required <= defined, required - defined
