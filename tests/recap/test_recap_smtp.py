"""Airflow's SmtpHook (connection `smtp_default` from AIRFLOW_CONN_SMTP_DEFAULT) delivers the
recap to the SMTP sink, which stores it as one complete .eml file per message; the mailer
tells a delivery it cannot be sure of (reply lost) from one that surely failed."""

import subprocess
import sys
import time
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

from recap_helpers import make_row

from tests.support.ports import free_port

import pytest

from wrapped_dev.fakes.smtp_sink import eml_name
from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.content import Intro
from weekly_wrapped.recap.grounding import template_intro
from weekly_wrapped.recap.mailer import (
    DeliveryUnknown,
    RecipientError,
    message_bytes,
    send_stored,
    send_with_airflow_smtp,
    single_recipient,
)
from weekly_wrapped.recap.render import build_message


def recap_message(**row_overrides):
    facts = facts_from_row(make_row(**row_overrides))
    return build_message(facts, Intro(template_intro(facts), "template"),
                         from_addr="Default <default@localhost>", to_addr="ada@example.com")


def read_eml(path: Path):
    return message_from_bytes(path.read_bytes(), policy=policy.default)


def test_hook_delivers_to_the_sink(mailbox):
    message = recap_message()
    send_with_airflow_smtp(message)
    files = list(mailbox.glob("*.eml"))
    assert len(files) == 1
    assert not list(mailbox.glob(".*.tmp")), "no temporary files left behind"
    stored = read_eml(files[0])
    assert stored["Message-ID"] == message["Message-ID"]
    assert stored["Delivered-To"] == "ada@example.com"
    # Sent as rendered (the stored bytes are never rewritten): From is the message's own.
    assert stored["From"] == "Default <default@localhost>" and stored["Return-Path"] == "<default@localhost>"
    assert stored.get_content_type() == "multipart/alternative"
    assert "312.4" in stored.get_body(("plain",)).get_content()
    assert "Hyperballad" in stored.get_body(("html",)).get_content()
    # The file is named by arrival time and Message-ID.
    assert files[0].name.endswith(message["Message-ID"].strip("<>") + ".eml")


def test_every_message_is_kept(mailbox):
    for user in ("u1", "u2", "u3"):
        send_with_airflow_smtp(recap_message(user_id=user))
    files = sorted(mailbox.glob("*.eml"))
    assert len(files) == 3
    assert len({read_eml(f)["Message-ID"] for f in files}) == 3


def test_a_lost_reply_is_unknown_and_the_sink_kept_the_message(sink):
    sink.lose_replies(1)
    message = recap_message()
    with pytest.raises(DeliveryUnknown):
        send_with_airflow_smtp(message)
    (eml,) = sink.messages()
    assert read_eml(eml)["Message-ID"] == message["Message-ID"]
    send_with_airflow_smtp(recap_message(user_id="u2"))  # the next connection is answered again
    assert len(sink.messages()) == 2


def test_a_server_that_is_down_is_a_plain_failure(sink):
    sink.stop()
    with pytest.raises(ConnectionError) as failure:
        send_with_airflow_smtp(recap_message())
    assert not isinstance(failure.value, DeliveryUnknown)


def test_the_stored_bytes_are_sent_unchanged_even_with_dots(sink):
    message = recap_message()
    data = message_bytes(message).replace(b"\r\n\r\n", b"\r\n\r\n.starts with a dot\r\n", 1)
    send_stored(data, "wrapped@localhost", "ada@example.com")
    (eml,) = sink.messages()
    assert eml.read_bytes().endswith(data)


@pytest.mark.parametrize("to, cc", [("a@example.com, b@example.com", None), ("", None), ("not-an-address", None),
                                    ("a@example.com", "c@example.com")])
def test_one_recipient_only(to, cc):
    message = recap_message()
    del message["To"]
    message["To"] = to
    if cc:
        message["Cc"] = cc
    with pytest.raises(RecipientError):
        single_recipient(message)


def test_eml_names_sort_by_arrival_and_are_safe():
    early = eml_name(datetime(2026, 11, 23, 12, 0, 0, 1, tzinfo=timezone.utc), "<a/b c@x>")
    late = eml_name(datetime(2026, 11, 23, 12, 0, 1, tzinfo=timezone.utc), "<a@x>")
    assert early < late and "/" not in early and " " not in early
    assert early == "20261123T120000.000001Z_a_b_c@x.eml"
    assert eml_name(datetime(2026, 11, 23, tzinfo=timezone.utc), None).startswith("20261123T000000.000000Z_no-id-")


def test_sink_runs_as_a_module(tmp_path):
    """`python -m wrapped_dev.fakes.smtp_sink --port P --dir D`, as the stack starts it."""
    import smtplib

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wrapped_dev.fakes.smtp_sink", "--port", str(port), "--dir", str(tmp_path),
         "--lose-replies", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "sink did not start"
                time.sleep(0.1)
        message = recap_message()
        with client, pytest.raises(smtplib.SMTPServerDisconnected):  # --lose-replies 1
            client.send_message(message)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.send_message(recap_message(user_id="u2"))
        assert len(list(tmp_path.glob("*.eml"))) == 2
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stored message_id=" + message["Message-ID"] in output
    # One line per message, without the body or the addresses.
    assert "Hyperballad" not in output and "ada@example.com" not in output


def test_gemini_fake_runs_as_a_module():
    """`python -m wrapped_dev.fakes.gemini_server --port P`, as the stack starts it."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wrapped_dev.fakes.gemini_server", "--port", str(port), "--api-key", "k"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "fake Gemini did not start"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
