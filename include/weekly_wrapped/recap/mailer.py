"""Send an EmailMessage through Airflow's SMTP provider. I/O edge.

The hook's own `send_email_smtp` builds an HTML-only message and retries `sendmail` on
any error, which can deliver twice when a reply is lost. We need our own multipart
message with a fixed Message-ID and one attempt per task try (the exactly-once claim
decides about retries), so the hook only opens the connection (host, port, TLS, login
from the Airflow Connection) and we send once on its client.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"


def send_with_airflow_smtp(message: EmailMessage, conn_id: str = SMTP_CONN_ID) -> None:
    """Deliver `message` once; raises if the server refuses it."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=conn_id) as hook:
        if hook.from_email:  # the connection's sender, when set, wins over the default
            del message["From"]
            message["From"] = hook.from_email
        # `_smtp_client` is the logged-in smtplib client the hook opened (provider 3.2 API).
        refused = hook._smtp_client.send_message(message)
    if refused:
        raise RuntimeError(f"SMTP server refused recipients: {sorted(refused)}")
    log.info("sent message_id=%s via %s", message["Message-ID"], conn_id)
