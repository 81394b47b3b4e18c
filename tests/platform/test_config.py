"""Settings come from the environment, then the repo's .env, then defaults."""

from wrapped_dev import config


def test_dotenv_lines_are_read_like_a_shell_would(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\n\nexport WRAPPED_PG_PORT=6543\nGEMINI_API_KEY='abc' # mine\nBROKEN LINE\n")
    assert config.read_dotenv(env) == {"WRAPPED_PG_PORT": "6543", "GEMINI_API_KEY": "abc"}


def test_environment_beats_dotenv_beats_default(monkeypatch):
    monkeypatch.setattr(config, "_DOTENV", {"WRAPPED_PG_PORT": "6543", "WRAPPED_KAFKA_PORT": "19092"})
    monkeypatch.setenv("WRAPPED_PG_PORT", "7777")
    monkeypatch.delenv("WRAPPED_KAFKA_PORT", raising=False)
    monkeypatch.delenv("WRAPPED_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("WRAPPED_AIRFLOW_PORT", raising=False)
    settings = config.load_settings()
    assert settings.pg_port == 7777
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.airflow_port == 8080


def test_kafka_cluster_ids_never_look_like_an_option():
    from wrapped_dev.stack.kafka import _cluster_id

    ids = [_cluster_id() for _ in range(5000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_the_stacks_spark_cluster_is_the_consumers_master_unless_one_is_given(monkeypatch):
    monkeypatch.setattr(config, "_DOTENV", {})
    for name in ("WRAPPED_SPARK_CLUSTER", "WRAPPED_SPARK_MASTER", "WRAPPED_SPARK_MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert config.load_settings().spark_master == "local[2]"
    monkeypatch.setenv("WRAPPED_SPARK_CLUSTER", "true")
    monkeypatch.setenv("WRAPPED_SPARK_MASTER_PORT", "17077")
    settings = config.load_settings()
    assert settings.spark_cluster and settings.spark_master == "spark://127.0.0.1:17077"
    assert settings.consumer.spark_master == settings.spark_master
    monkeypatch.setenv("WRAPPED_SPARK_MASTER", "spark://elsewhere:7077")
    assert config.load_settings().spark_master == "spark://elsewhere:7077"
