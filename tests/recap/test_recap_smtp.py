"""Airflow's SmtpHook (connection `smtp_default` from AIRFLOW_CONN_SMTP_DEFAULT) delivers the
recap to the SMTP sink, which stores it as one complete .eml file per message."""

import subprocess
import sys
import time
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

from recap_helpers import make_row

from tests.support.ports import free_port

from wrapped_dev.fakes.smtp_sink import eml_name
from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.grounding import template_recap
from weekly_wrapped.recap.mailer import send_with_airflow_smtp
from weekly_wrapped.recap.render import build_message


def recap_message(**row_overrides):
    facts = facts_from_row(make_row(**row_overrides))
    return build_message(facts, template_recap(facts), recap_source="template",
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
    assert stored["From"] == "Weekly Wrapped <wrapped@localhost>"  # the connection's from_email wins
    assert [p.get_content_type() for p in stored.iter_parts()] == ["text/plain", "text/html"]
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
        [sys.executable, "-m", "wrapped_dev.fakes.smtp_sink", "--port", str(port), "--dir", str(tmp_path)],
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
        with client:
            client.send_message(message)
        assert len(list(tmp_path.glob("*.eml"))) == 1
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
