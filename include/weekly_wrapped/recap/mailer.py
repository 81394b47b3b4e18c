"""Send a stored message's bytes through Airflow's SMTP provider, once per call. I/O edge.

The hook's own `send_email_smtp` builds an HTML-only message and retries `sendmail` on
any error, which can deliver twice when a reply is lost. We send the exact bytes stored
in app.sent_emails, one attempt per call (the send record decides about retries), so the
hook only opens the connection (host, port, TLS, login from the Airflow Connection).

The SMTP dialogue is spelled out so that a failure says whether the message may have
been delivered:
- anything before the server's 354 to DATA (connect, MAIL, RCPT, DATA refused) means it
  was NOT delivered: the caller may send again;
- once the message's bytes are on the wire, a lost or missing reply (dropped connection,
  timeout) means we cannot know: `DeliveryUnknown`, and the caller must not resend blindly.
"""

from __future__ import annotations

import logging
import re
import smtplib
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import getaddresses, parseaddr

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"


class DeliveryUnknown(Exception):
    """The server got the whole message but its reply was lost: it may or may not deliver it."""


class RecipientError(ValueError):
    """The message does not have exactly one recipient address."""


def message_bytes(message: EmailMessage) -> bytes:
    """The message as it goes over SMTP (CRLF line ends): what is stored and what is sent."""
    return message.as_bytes(policy=SMTP)


def single_recipient(message: EmailMessage) -> str:
    """The one address in To; raises RecipientError for none, several, or any Cc/Bcc."""
    if message.get_all("Cc") or message.get_all("Bcc"):
        raise RecipientError("a recap goes to its user only: no Cc or Bcc")
    addresses = [addr for _, addr in getaddresses(message.get_all("To") or []) if addr]
    if len(addresses) != 1 or "@" not in addresses[0] or re.search(r"[\s,;]", addresses[0]):
        raise RecipientError(f"a recap goes to exactly one address, got {len(addresses)}")
    return addresses[0]


def envelope_sender(message: EmailMessage) -> str:
    return parseaddr(str(message["From"]))[1]


def transmit(client: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """MAIL, RCPT, DATA of `data` on an open client, raising DeliveryUnknown once it is on the wire."""
    client.ehlo_or_helo_if_needed()
    code, reply = client.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = client.rcpt(recipient)
    if code not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = client.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    # As smtplib.SMTP.data: dot-stuff, end with CRLF . CRLF.
    wire = re.sub(rb"(?m)^\.", b"..", data)
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    try:
        client.send(wire + b".\r\n")
        code, reply = client.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as exc:  # socket errors and timeouts are OSErrors
        raise DeliveryUnknown(f"no reply after the message was sent: {type(exc).__name__}: {exc}") from exc
    if code != 250:  # an explicit refusal after DATA: the server will not deliver it
        raise smtplib.SMTPDataError(code, reply)


def send_stored(data: bytes, sender: str, recipient: str, conn_id: str = SMTP_CONN_ID) -> None:
    """Deliver the stored message `data` to `recipient`, one attempt.

    Raises DeliveryUnknown when the outcome cannot be known, any other exception when the
    message was not delivered.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=conn_id) as hook:
        # `_smtp_client` is the logged-in smtplib client the hook opened (provider 3.2 API).
        transmit(hook._smtp_client, sender, recipient, data)
    log.info("sent %d bytes via %s", len(data), conn_id)


def send_with_airflow_smtp(message: EmailMessage, conn_id: str = SMTP_CONN_ID) -> None:
    """Deliver `message` once, as it is (its From is the envelope sender)."""
    send_stored(message_bytes(message), envelope_sender(message), single_recipient(message), conn_id)
