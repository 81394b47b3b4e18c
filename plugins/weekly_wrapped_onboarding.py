"""Serves Weekly Wrapped's onboarding page from Airflow's api-server at /wrapped/connect, the
account pages behind the links in e-mails at /wrapped/account (confirm the address, unsubscribe,
delete my data), and each listener's own page at /wrapped/me.

The pages themselves are `weekly_wrapped.users.onboarding` (connect Spotify, recap e-mail, time
zone), `weekly_wrapped.users.account_pages` and `weekly_wrapped.page.app`.
Loading the plugin also keeps the query strings of /wrapped/ requests (OAuth code and state,
invite codes) out of the api-server's access log (`weekly_wrapped.users.access_log`).
Outside demo mode, while a setting holds a published demo secret (or a key is missing), every
page answers a friendly 503 instead (`weekly_wrapped.secrets_check.guard_app`).
"""

from airflow.plugins_manager import AirflowPlugin

from weekly_wrapped.page.app import create_page_app
from weekly_wrapped.secrets_check import guard_app
from weekly_wrapped.users import access_log
from weekly_wrapped.users.account_pages import create_account_app
from weekly_wrapped.users.onboarding import create_app

access_log.install()


class WeeklyWrappedOnboarding(AirflowPlugin):
    name = "weekly_wrapped_onboarding"
    # The api-server mounts these in order and the first matching prefix wins: /wrapped/account and
    # /wrapped/me before /wrapped.
    fastapi_apps = [
        {"app": guard_app(create_page_app()), "url_prefix": "/wrapped/me", "name": "Weekly Wrapped: your page"},
        {"app": guard_app(create_account_app()), "url_prefix": "/wrapped/account", "name": "Weekly Wrapped account"},
        {"app": guard_app(create_app()), "url_prefix": "/wrapped", "name": "Weekly Wrapped onboarding"},
    ]
