"""People: their accounts (e-mail, time zone, encrypted refresh token, status) and how they join.

- `accounts`    the `app.users` rows: save, look up, token encryption, needs_reauth
- `tokens`      refresh tokens under the keys of `wrapped_token_secret` (MultiFernet), key rotation
- `onboarding`  the page served by Airflow's api-server at /wrapped/connect (Spotify consent)
- `invites`     per-person invite codes (outside demo mode), their rate limit, the operator's command
- `access_log`  keeps /wrapped/ query strings (OAuth code and state) out of the api-server's log
- `links`       signed, expiring tokens per purpose for the links in e-mails and the cookies
- `notices`     one-person e-mails (confirmations, reminders, alerts) through smtp_default
- `addresses`   the recap address, confirmed by its owner (double opt-in) before any recap
- `leaving`     unsubscribe (signed link, RFC 8058 headers) and delete-my-data (every row with the id)
- `account_pages` the pages behind those links, at /wrapped/account (confirm, unsubscribe, delete)
"""
