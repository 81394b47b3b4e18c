"""wrapped_watch: every hour, keep people's consent alive and tell the operator about trouble.

- `consent_notices`: the one reminder two weeks before a user's Spotify consent runs out, and
  the one "reconnect" e-mail to users who reached needs_reauth (weekly_wrapped.users.consent).
- `stale_polls`: active users not polled successfully for `wrapped_alert_stale_poll_hours`
  (Variable, default 6).
- `consumer_restarts`: the streaming consumer found dead by its supervisor again and again.
Alerts go to `wrapped_admin_email` (none when empty), one e-mail per problem, recorded in
`app.alerts` (weekly_wrapped.alerts). Failing DAG runs and recaps left out are reported by
the DAGs themselves (their callbacks, and `weekly_wrapped`'s summary).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import dag, task

from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess

DAG_ID = Path(__file__).stem


@dag(
    dag_id=DAG_ID,
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["weekly-wrapped", "alerts", "email"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    on_failure_callback=AlertOnFailure(),
    on_success_callback=ResolveOnSuccess(),
    doc_md=__doc__,
)
def wrapped_watch():
    @task
    def consent_notices() -> dict:
        """Consent reminders and reconnect notices that are due, each sent once."""
        from weekly_wrapped.airflow.connections import variable, warehouse_dsn
        from weekly_wrapped.users.consent import send_due_notices

        return send_due_notices(warehouse_dsn(), variable("wrapped_public_url"), variable("wrapped_link_secret"))

    @task
    def stale_polls() -> list[str]:
        """Alert about active users not polled successfully for N hours; resolve the polled ones."""
        from weekly_wrapped import alerts
        from weekly_wrapped.airflow.connections import variable, warehouse_dsn

        problems = alerts.check_stale_polls(warehouse_dsn(), variable("wrapped_admin_email"),
                                            float(variable("wrapped_alert_stale_poll_hours")))
        return [p.key for p in problems]

    @task
    def consumer_restarts() -> list[str]:
        """Alert when the supervisor keeps finding the streaming consumer dead."""
        from weekly_wrapped import alerts
        from weekly_wrapped.airflow.connections import consumer_config, variable, warehouse_dsn
        from weekly_wrapped.streaming.supervisor import recent_deaths

        deaths = recent_deaths(consumer_config(), alerts.CONSUMER_WINDOW.total_seconds())
        problems = alerts.check_consumer(warehouse_dsn(), variable("wrapped_admin_email"), deaths)
        return [p.key for p in problems]

    consent_notices()
    stale_polls()
    consumer_restarts()


wrapped_watch()
