"""The real google-genai SDK against the fake Gemini server: grounded answers, retries on
429/500, and the template fallback when Gemini fails, strays or blocks."""

import json

import httpx
import pytest
from recap_helpers import make_row

from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.gemini import generate_recap_text
from weekly_wrapped.recap.grounding import grounding_problems, template_recap
from weekly_wrapped.recap.job import write_recap
from weekly_wrapped.recap.prompt import build_prompt

FAST = {"initial_delay_s": 0.05, "max_delay_s": 0.1, "timeout_s": 10}


@pytest.fixture
def facts():
    return facts_from_row(make_row())


def ask(gemini, facts, **kwargs):
    options = {**FAST, **kwargs}
    return generate_recap_text(build_prompt(facts), api_key=gemini.api_key, model=gemini.model,
                               base_url=gemini.base_url, **options)


def test_sdk_gets_a_grounded_answer(gemini, gemini_server, facts):
    text = ask(gemini, facts)
    assert "Björk" in text and "87" in text and "312.4" in text
    assert grounding_problems(text, facts.as_prompt_facts()) == []
    assert gemini_server.state.stats()["by_status"] == {"200": 1}


def test_fake_answers_the_documented_v1beta_path_and_checks_the_key(gemini, facts):
    body = {"contents": [{"role": "user", "parts": [{"text": build_prompt(facts).user_prompt}]}]}
    url = f"{gemini.base_url}/v1beta/models/{gemini.model}:generateContent"
    ok = httpx.post(url, json=body, headers={"x-goog-api-key": gemini.api_key}).json()
    candidate = ok["candidates"][0]
    assert candidate["finishReason"] == "STOP" and "Björk" in candidate["content"]["parts"][0]["text"]
    assert ok["usageMetadata"]["totalTokenCount"] > 0
    assert httpx.post(url, json=body, headers={"x-goog-api-key": "wrong"}).status_code == 400
    assert httpx.post(url, json=body).status_code == 403
    assert httpx.post(f"{url}?key={gemini.api_key}", json=body).status_code == 200


def test_answers_are_deterministic(gemini, facts):
    assert ask(gemini, facts) == ask(gemini, facts)


def test_wrong_key_is_an_api_error(gemini, facts):
    from google.genai import errors

    with pytest.raises(errors.ClientError) as caught:
        generate_recap_text(build_prompt(facts), api_key="not-the-key", model=gemini.model, base_url=gemini.base_url, **FAST)
    assert caught.value.code == 400


@pytest.mark.parametrize("status", [429, 500])
def test_transient_errors_are_retried(gemini, gemini_server, facts, status):
    gemini_server.state.configure({"fail_next": 2, "fail_status": status})
    text = ask(gemini, facts, attempts=3)
    assert "Björk" in text
    assert gemini_server.state.stats()["by_status"] == {str(status): 2, "200": 1}


def test_retries_are_bounded(gemini, gemini_server, facts):
    from google.genai import errors

    gemini_server.state.configure({"fail_next": 10, "fail_status": 503})
    with pytest.raises(errors.ServerError):
        ask(gemini, facts, attempts=3)
    assert gemini_server.state.stats()["calls"] == 3


def test_timeout_is_bounded(gemini, gemini_server, facts):
    gemini_server.state.configure({"delay_s": 3})
    with pytest.raises(Exception):
        ask(gemini, facts, timeout_s=0.5, attempts=1)


def test_write_recap_uses_gemini_when_grounded(gemini, facts):
    text, source = write_recap(facts, gemini)
    assert source == "gemini" and "Björk" in text


@pytest.mark.parametrize(
    "switches",
    [{"fail_next": 10, "fail_status": 500}, {"mode": "ungrounded"}, {"mode": "blocked"}],
    ids=["gemini-down", "ungrounded", "blocked"],
)
def test_write_recap_falls_back_to_the_template(gemini, gemini_server, facts, switches, monkeypatch):
    import weekly_wrapped.recap.gemini as gemini_module

    # Keep the SDK's back-off short so the fallback test stays fast.
    real = gemini_module.generate_recap_text
    monkeypatch.setattr(gemini_module, "generate_recap_text", lambda *a, **k: real(*a, **{**k, **FAST}))
    gemini_server.state.configure(switches)
    text, source = write_recap(facts, gemini)
    assert (text, source) == (template_recap(facts), "template")


def test_no_gemini_configured_uses_the_template(facts):
    assert write_recap(facts, None) == (template_recap(facts), "template")


def test_api_key_is_never_logged(gemini, facts, caplog):
    caplog.set_level("DEBUG")
    ask(gemini, facts)
    assert gemini.api_key not in caplog.text
    assert "ada@example.com" not in caplog.text


def test_control_endpoint_reports_stats(gemini, gemini_server):
    stats = httpx.get(f"{gemini.base_url}/_fake/stats").json()
    assert stats["config"]["mode"] == "grounded"
    changed = httpx.post(f"{gemini.base_url}/_fake/config", json={"mode": "ungrounded"}).json()
    assert changed["mode"] == "ungrounded"
    assert json.loads(httpx.get(f"{gemini.base_url}/healthz").text) == {"status": "ok"}
