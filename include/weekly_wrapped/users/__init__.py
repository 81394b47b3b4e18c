"""People: their accounts (e-mail, time zone, encrypted refresh token, status) and how they join.

- `accounts`    the `app.users` rows: save, look up, token encryption, needs_reauth
- `tokens`      refresh tokens under the keys of `wrapped_token_secret` (MultiFernet), key rotation
- `onboarding`  the page served by Airflow's api-server at /wrapped/connect (Spotify consent)
- `invites`     per-person invite codes (outside demo mode), their rate limit, the operator's command
- `access_log`  keeps /wrapped/ query strings (OAuth code and state) out of the api-server's log
"""
