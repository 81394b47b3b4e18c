"""weekly_wrapped: one recap e-mail per active user and week, sent once the week is complete.

Runs every hour. Each run sends only what is due, ready and not sent yet, so most runs
find nothing to do, and a user whose week was not ready is simply picked up by a later run:
- due: the user's last complete local week (and, while unsent, the two before it);
- ready: polled after the week ended, that poll's plays loaded by the consumer, and the
  marts rebuilt by a dbt_build run that started after both (its `wrapped_marts` event);
  otherwise the week is reported `not_ready` in the run's summary;
- sent once: rendered once (Gemini intro, `gemini_default`; the template if Gemini fails
  or strays), stored in `app.sent_emails`, and those bytes sent through `smtp_default`.
  A send whose outcome is unknown (reply lost) is recorded `unknown` and resent only by
  the policy in the README ("The weekly e-mail"), or now with `resend_unknown`.

An hourly run with a cheap "nothing to do" check was chosen over a sensor: a sensor waits
for all users at once, while weeks end at different hours in different time zones and one
user's missing poll must not hold back everybody else.

Params: `week_start` (YYYY-MM-DD; any day stands for its week's Monday) recaps that week for
everyone instead of their due weeks; `preview_only` renders the recaps to HTML files in
$WRAPPED_PREVIEW_DIR (template intro, as `wrapped preview` does) and sends nothing;
`resend_unknown` resends the `unknown` sends of this run's weeks now (an operator's
confirmation that they did not arrive).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Param, dag, task

from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess
from weekly_wrapped.airflow.assets import MARTS_WRAPPED

DAG_ID = Path(__file__).stem
# Mapped tasks that send at once; the users are split into this many batches (at least 25
# users each), and each batch works on BATCH_THREADS of them at a time (recap.job).
PARALLEL_BATCHES = 4


@dag(
    dag_id=DAG_ID,
    schedule="@hourly",
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
            "instead of each user's due weeks.",
        ),
        "preview_only": Param(False, type="boolean",
                              description="Render the recaps to HTML files; send nothing."),
        "resend_unknown": Param(False, type="boolean",
                                description="Resend now the stored e-mails whose delivery is unknown."),
        # Which installation to work on; another warehouse, Gemini or SMTP server (a staging
        # copy, the throughput benchmark's) is another set of Connections. Read with .get():
        # runs created before these params existed lack them.
        "warehouse_conn_id": Param("postgres_default", type="string"),
        "gemini_conn_id": Param("gemini_default", type="string"),
        "smtp_conn_id": Param("smtp_default", type="string"),
    },
    on_failure_callback=AlertOnFailure(),  # one e-mail to the operator per failing DAG
    on_success_callback=ResolveOnSuccess(),
    doc_md=__doc__,
)
def weekly_wrapped():
    @task(inlets=[MARTS_WRAPPED])
    def find_recipients(params=None, dag_run=None, inlet_events=None, ti=None) -> list[list[dict]]:
        """Due, unsent, ready weeks in batches: [[{user_id, week_start}]]; XCom "not_ready": the others."""
        from weekly_wrapped.airflow.connections import warehouse_dsn
        from weekly_wrapped.recap.job import batches, recap_targets

        # When the dbt run behind the current marts started: its `wrapped_marts` event's run
        # (an event posted by hand, without a run, counts from its own time).
        latest = list(inlet_events[MARTS_WRAPPED].ascending(False).limit(1))
        marts_built_from = None
        if latest:
            source = latest[0].source_dag_run
            marts_built_from = source.start_date if source is not None and source.start_date else latest[0].timestamp
        print(f"marts built by a run started at {marts_built_from}")
        # The run's own time (not "now"), so a rerun picks the same weeks.
        dsn = warehouse_dsn(params.get("warehouse_conn_id", "postgres_default"))
        targets = recap_targets(dsn, dag_run.run_after, params.get("week_start"),
                                marts_built_from=marts_built_from, preview=bool(params.get("preview_only")))
        for entry in targets["not_ready"]:
            print(f"not ready: user={entry['user_id']} week={entry['week_start']} ({entry['reason']})")
        ti.xcom_push(key="not_ready", value=targets["not_ready"])
        return batches(targets["ready"], PARALLEL_BATCHES)

    # One mapped task per batch of users: Airflow's per-task start-up would dominate a
    # per-user task (1,000 users: 4 tasks of 250, not 1,000 tasks), and threads overlap the Gemini waits. A user's failure is its outcome
    # (sent again by the next run), not the batch's.
    @task(max_active_tis_per_dagrun=PARALLEL_BATCHES)
    def send_recaps(batch: list[dict], params=None) -> list[dict]:
        """Gemini intro, render, store, send once, for each user and week of the batch."""
        from weekly_wrapped.airflow.connections import gemini_api, smtp_from, spotify_app, variable, warehouse_dsn

        dsn = warehouse_dsn(params.get("warehouse_conn_id", "postgres_default"))
        if params.get("preview_only"):
            from weekly_wrapped.recap.job import preview_batch

            return preview_batch(dsn, batch)
        from weekly_wrapped import secrets_check
        from weekly_wrapped.recap.job import send_batch

        secrets_check.refuse_in_task()  # outside demo mode, no recap is signed with a published secret
        recommendations = None
        if variable("wrapped_ai_recommendations").lower() == "true":
            from weekly_wrapped.recap.ai import artist_lookups

            recommendations = artist_lookups(dsn, spotify_app(), float(variable("wrapped_spotify_rps")))
        smtp = params.get("smtp_conn_id", "smtp_default")
        return send_batch(dsn, batch, gemini=gemini_api(params.get("gemini_conn_id", "gemini_default")),
                          from_addr=smtp_from(smtp),
                          smtp_conn_id=smtp, recommendations=recommendations,
                          resend_unknown=bool(params.get("resend_unknown")),
                          # every recap carries signed unsubscribe / delete-my-data links (users.leaving)
                          link_secret=variable("wrapped_link_secret"), public_url=variable("wrapped_public_url"))

    # Runs when there was nothing to send too (zero batches).
    @task(trigger_rule="none_failed")
    def summarize(outcomes: list[list[dict]], not_ready: list[dict], params=None) -> dict:
        """Counts by status and recap source, for the run's log and XCom; alerts the operator about
        users left out (weekly_wrapped.alerts); fails the run when a send failed."""
        from weekly_wrapped.recap.job import count_outcomes

        flat = [o for batch in outcomes for o in batch]
        summary = count_outcomes(flat, not_ready)
        print(f"weekly_wrapped: {summary}")
        if not params.get("preview_only") and not params.get("week_start"):  # a normal run sees every due week
            from weekly_wrapped import alerts
            from weekly_wrapped.airflow.connections import variable, warehouse_dsn

            alerts.check_recap_send(warehouse_dsn(params.get("warehouse_conn_id", "postgres_default")),
                                    variable("wrapped_admin_email"), flat, not_ready)
        if summary.get("failed"):
            from airflow.sdk.exceptions import AirflowFailException

            # Visible in the UI, without retrying a verdict; the stored messages are sent by the next run.
            raise AirflowFailException(f"{summary['failed']} recap(s) failed to send; the next run retries them")
        return summary

    found = find_recipients()
    summarize(send_recaps.expand(batch=found), found["not_ready"])


weekly_wrapped()
