"""Short e-mails to one person (confirm your address, your data is deleted, reconnect Spotify,
an operator alert), sent once through Airflow's SMTP connection, from the recap's address.

Callable from a task or from the api-server's pages: both read `smtp_default`.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from weekly_wrapped.recap import mailer


def notice(*, from_addr: str, to: str, subject: str, text: str, html: str | None = None,
           headers: dict[str, str] | None = None) -> EmailMessage:
    """A plain-text e-mail (with an HTML part when given) to exactly one address."""
    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="weekly-wrapped.local")
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to these
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def send_notice(*, to: str, subject: str, text: str, html: str | None = None,
                headers: dict[str, str] | None = None, conn_id: str = mailer.SMTP_CONN_ID) -> None:
    """Build and send a notice from `smtp_default`'s `from_email`, one attempt (raises when not sent)."""
    from weekly_wrapped.airflow.connections import smtp_from

    mailer.send_with_airflow_smtp(
        notice(from_addr=smtp_from(conn_id), to=to, subject=subject, text=text, html=html, headers=headers),
        conn_id)
