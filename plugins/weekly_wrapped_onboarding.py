"""Serves Weekly Wrapped's onboarding page from Airflow's api-server at /wrapped/connect.

The page itself is `weekly_wrapped.users.onboarding` (connect Spotify, recap e-mail, time zone).
"""

from airflow.plugins_manager import AirflowPlugin

from weekly_wrapped.users.onboarding import create_app


class WeeklyWrappedOnboarding(AirflowPlugin):
    name = "weekly_wrapped_onboarding"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/wrapped", "name": "Weekly Wrapped onboarding"}]
