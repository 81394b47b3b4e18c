"""DAG-run callbacks that tell the operator about failing DAGs, once per problem.

Every DAG of ours sets `on_failure_callback=AlertOnFailure()` and
`on_success_callback=ResolveOnSuccess()`. They are Airflow notifiers (BaseNotifier, run by the
Dag processor after the run ends) that go through `weekly_wrapped.alerts` rather than mailing
directly (as the SMTP provider's SmtpNotifier would): a DAG failing every hour is one alert
(`dag_failed:<dag_id>`), resolved by the DAG's next successful run, and mailed again only if
it fails again after that. The e-mail goes through `smtp_default` (users.notices).
"""

from __future__ import annotations

from airflow.sdk import BaseNotifier


class _AlertNotifier(BaseNotifier):
    """Nothing to template: the e-mail's text comes from weekly_wrapped.alerts."""

    def render_template_fields(self, context, jinja_env=None) -> None:
        # Skipped: with no template fields it only builds a Jinja environment from context["dag"],
        # which `dag.test()` gives as a SerializedDAG that cannot (AttributeError: get_template_env).
        pass


class AlertOnFailure(_AlertNotifier):
    """on_failure_callback: record `dag_failed:<dag_id>` and mail the operator if it is new."""

    def notify(self, context) -> None:
        from weekly_wrapped import alerts
        from weekly_wrapped.airflow.connections import variable, warehouse_dsn

        dag_id = context["dag"].dag_id
        try:
            problem = alerts.dag_failure_problem(dag_id, context.get("run_id"), context.get("reason"))
            alerts.report(warehouse_dsn(), variable("wrapped_admin_email"), [problem])
        except Exception:  # an alert that cannot be sent must not hide the run's own failure in the logs
            self.log.exception("could not record or mail the failure of %s", dag_id)


class ResolveOnSuccess(_AlertNotifier):
    """on_success_callback: a successful run resolves `dag_failed:<dag_id>` (a later failure alerts again)."""

    def notify(self, context) -> None:
        from weekly_wrapped import alerts
        from weekly_wrapped.airflow.connections import warehouse_dsn

        dag_id = context["dag"].dag_id
        try:
            alerts.resolve(warehouse_dsn(), alerts.dag_failure_key(dag_id))
        except Exception:  # the run succeeded; an unreachable warehouse is the other checks' business
            self.log.exception("could not resolve the failure alert of %s", dag_id)
