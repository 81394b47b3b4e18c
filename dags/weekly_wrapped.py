"""weekly_wrapped: every Monday, one recap e-mail per active user for their last complete week.

For each user: read the `marts.wrapped_weekly` row, ask Gemini (connection `gemini_default`)
for a short intro grounded in that row's numbers (the template recap if Gemini fails or
strays), render HTML + text, and send it through `smtp_default` exactly once per
(user, week) — `app.sent_emails` records each send, so retries and reruns never send twice.

Param `week_start` (YYYY-MM-DD; any day stands for its week's Monday) recaps that week for
everyone; without it each user gets the last week that is complete in their own time zone.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Param, dag, task

DAG_ID = Path(__file__).stem


@dag(
    dag_id=DAG_ID,
    # Weeks run Monday 00:00 to Monday 00:00 in each user's own time zone. At 12:00 UTC on
    # Monday every zone from UTC-12 to UTC+14 has finished the same local week, so one run
    # serves everybody and nobody's week is cut short (the week itself is computed per user).
    schedule="0 12 * * 1",
    start_date=datetime(2026, 1, 5, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["weekly-wrapped", "recap", "email"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True},
    params={
        "week_start": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Recap this week (YYYY-MM-DD, its Monday or any day in it) "
            "instead of each user's last complete week.",
        ),
    },
    doc_md=__doc__,
)
def weekly_wrapped():
    @task
    def find_recipients(params=None, dag_run=None) -> list[dict]:
        """Active users with a wrapped_weekly row for their week: [{user_id, week_start}]."""
        from weekly_wrapped.airflow.connections import warehouse_dsn
        from weekly_wrapped.recap.job import recap_targets

        # The run's own time (not "now"), so a rerun picks the same weeks.
        return recap_targets(warehouse_dsn(), dag_run.run_after, (params or {}).get("week_start"))

    # One mapped task per user, so one user's failure retries alone. Airflow's
    # [core] max_map_length (1024 by default) bounds the users per run.
    @task(map_index_template="{{ recap_user }}", max_active_tis_per_dagrun=4)
    def send_recap(target: dict) -> dict:
        """Gemini recap, render, send once, for one user and week."""
        from airflow.sdk import get_current_context

        from weekly_wrapped.airflow.connections import gemini_api, smtp_from, warehouse_dsn
        from weekly_wrapped.recap.job import send_weekly_recap

        get_current_context()["recap_user"] = target["user_id"]  # names the mapped task in the UI
        return send_weekly_recap(
            warehouse_dsn(),
            target["user_id"],
            target["week_start"],
            gemini=gemini_api(),
            from_addr=smtp_from(),
        )

    @task
    def summarize(outcomes: list[dict]) -> dict:
        """Counts by status and recap source, for the run's log and XCom."""
        from weekly_wrapped.recap.job import count_outcomes

        summary = count_outcomes(list(outcomes))
        print(f"weekly_wrapped: {summary}")
        return summary

    summarize(send_recap.expand(target=find_recipients()))


weekly_wrapped()
