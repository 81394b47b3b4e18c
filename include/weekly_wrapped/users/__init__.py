"""People: their accounts (e-mail, time zone, encrypted refresh token, status) and how they join.

- `accounts`    the `app.users` rows: save, look up, token encryption, needs_reauth
- `onboarding`  the page served by Airflow's api-server at /wrapped/connect (Spotify consent)
"""
