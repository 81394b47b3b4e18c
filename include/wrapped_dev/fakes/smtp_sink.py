"""A local SMTP server that keeps every message it receives as an `.eml` file.

Run it as `python -m wrapped_dev.fakes.smtp_sink --port 8025 --dir .local/mail`.
It plays the part Mailpit plays in docker-compose: the real SMTP client (Airflow's
SMTP provider) delivers to it, and people and tests read the files.

Each message is written to a temporary name and renamed into place, so a reader never
sees half a file. The name sorts by arrival: `<UTC timestamp>_<Message-ID>.eml`. Like a
real delivery agent, it prepends `Return-Path` and `Delivered-To` from the envelope.

Faults, for the exactly-once tests: `controller.handler.lose_replies = n` makes the next
n messages "accepted but reply lost" (stored, then the connection drops before the 250),
and `--lose-replies n` does the same from the command line. "Down then up" is
`controller.stop()` and `start_sink(...)` again on the same port.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import threading
import uuid
from datetime import datetime, timezone
from email.parser import BytesHeaderParser
from pathlib import Path

from aiosmtpd.controller import Controller

log = logging.getLogger("wrapped_dev.fakes.smtp_sink")


def eml_name(received_at: datetime, message_id: str | None) -> str:
    """`20261124T081500.123456Z_<safe message id>.eml`: sorts by arrival, unique per message."""
    stamp = received_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    ident = (message_id or "").strip().strip("<>")
    # Keep file names portable: anything but letters, digits and . - @ becomes _.
    safe = re.sub(r"[^A-Za-z0-9.@-]+", "_", ident)[:120] or f"no-id-{uuid.uuid4().hex[:12]}"
    return f"{stamp}_{safe}.eml"


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write `data` to directory/name so that the file appears complete or not at all."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    if final.exists():  # same id in the same microsecond: keep both
        final = directory / f"{final.stem}_{uuid.uuid4().hex[:8]}.eml"
    tmp = directory / f".{final.name}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


class MailboxHandler:
    """aiosmtpd handler: accept every recipient, store each message, log one line."""

    def __init__(self, directory: Path, lose_replies: int = 0):
        self.directory = Path(directory)
        self.lose_replies = lose_replies  # the next n messages are stored, then their reply is lost

    async def handle_DATA(self, server, session, envelope):
        content: bytes = envelope.original_content or envelope.content
        headers = BytesHeaderParser().parsebytes(content)
        message_id = headers.get("Message-ID")
        trace = f"Return-Path: <{envelope.mail_from}>\r\n".encode()
        for rcpt in envelope.rcpt_tos:
            trace += f"Delivered-To: {rcpt}\r\n".encode()
        path = write_atomically(self.directory, eml_name(datetime.now(timezone.utc), message_id), trace + content)
        # Ids and sizes only: bodies (and the people in them) stay out of the log.
        log.info(
            "stored message_id=%s recipients=%d bytes=%d file=%s",
            message_id,
            len(envelope.rcpt_tos),
            len(content),
            path.name,
        )
        if self.lose_replies > 0:
            self.lose_replies -= 1
            log.info("dropping the connection before the reply to message_id=%s (lose_replies)", message_id)
            server.transport.abort()  # what the client sees when a link dies after the message went out
            return "250 Message accepted for delivery"  # written nowhere: the transport is gone
        return "250 Message accepted for delivery"


def start_sink(directory: Path, host: str = "127.0.0.1", port: int = 8025, lose_replies: int = 0) -> Controller:
    """Start the sink on a background thread and return its controller (`.stop()` it)."""
    controller = Controller(
        MailboxHandler(Path(directory), lose_replies),
        hostname=host,
        port=port,
        enable_SMTPUTF8=True,
        data_size_limit=25 * 1024 * 1024,
    )
    controller.start()
    return controller


def main(argv: list[str] | None = None) -> None:
    from wrapped_dev.config import load_settings

    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.smtp_port)
    parser.add_argument("--dir", type=Path, default=settings.mail_dir, help="where the .eml files go")
    parser.add_argument("--lose-replies", type=int, default=0,
                        help="store the first N messages, then drop the connection before replying")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # aiosmtpd logs every SMTP command (addresses included) at INFO; our one line per message is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = start_sink(args.dir, args.host, args.port, args.lose_replies)
    log.info("SMTP sink listening on %s:%s, storing to %s", args.host, args.port, args.dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):  # wake up now and then so signals are handled promptly
        pass
    controller.stop()
    log.info("SMTP sink stopped")


if __name__ == "__main__":
    main()
