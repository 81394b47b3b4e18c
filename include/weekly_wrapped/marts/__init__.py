"""The dbt marts: running the dbt project (`dbt_runner`)."""
