"""A local fake of the Gemini REST API, for the real `google-genai` SDK.

Run it as `python -m wrapped_dev.fakes.gemini_server --port 8902` and point the SDK at
it with `HttpOptions(base_url="http://127.0.0.1:8902")` (or env `GOOGLE_GEMINI_BASE_URL`).

What the SDK (3.x) sends, and therefore what this serves:
- `POST /{version}/models/{model}:generateContent`. google-genai 3.x defaults to `v1`
  (older releases and the REST docs use `v1beta`); every version is accepted.
- the key in the `x-goog-api-key` header (the REST docs also allow `?key=`).
- a JSON body with `contents`, optional `systemInstruction` and `generationConfig`.

The answer is deterministic and GROUNDED in the prompt: the fake finds the first JSON
object in the prompt text (the recap prompt carries its facts as JSON) and writes a
short recap that only repeats values it found there. Tests can then check that what
came back matches the facts they sent.

Behaviour switches, for retry and fallback tests (also settable at start-up by flags):
- `POST /_fake/config` with JSON `{"fail_next": 2, "fail_status": 429}` makes the next two
  generateContent calls fail with that status; `{"mode": "ungrounded"}` makes answers
  contain a number that was not in the prompt; `{"mode": "blocked"}` answers with
  finishReason SAFETY and no text; `{"delay_s": 3}` sleeps before answering;
  `{"reset": true}` restores the defaults and the counters.
- `GET /_fake/stats` returns how many calls were made, by status.
- `GET /healthz` answers 200.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from wrapped_dev.fakes import serve_until_interrupted

log = logging.getLogger("wrapped_dev.fakes.gemini")

GENERATE_PATH = re.compile(r"^/(?P<version>v1[a-z0-9]*)/models/(?P<model>[^/:]+):generateContent$")
MODEL_PATH = re.compile(r"^/(?P<version>v1[a-z0-9]*)/models/(?P<model>[^/:]+)$")

# The statuses the real API uses for each HTTP code (google.rpc.Code names).
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

DEFAULTS = {"mode": "grounded", "fail_next": 0, "fail_status": 500, "delay_s": 0.0}


class FakeState:
    """Switches and counters shared by all request threads."""

    def __init__(self, api_key: str | None, **overrides):
        self.api_key = api_key or None  # None: any non-empty key is accepted
        self.lock = threading.Lock()
        self.config = dict(DEFAULTS)
        self.config.update({k: v for k, v in overrides.items() if v is not None})
        self.calls = 0
        self.by_status: dict[str, int] = {}

    def configure(self, changes: dict) -> dict:
        with self.lock:
            if changes.get("reset"):
                self.config = dict(DEFAULTS)
                self.calls = 0
                self.by_status = {}
            for key in DEFAULTS:
                if key in changes:
                    self.config[key] = type(DEFAULTS[key])(changes[key])
            return dict(self.config)

    def next_outcome(self) -> tuple[int | None, dict]:
        """Count one generateContent call; return (status to fail with or None, config)."""
        with self.lock:
            self.calls += 1
            if self.config["fail_next"] > 0:
                self.config["fail_next"] -= 1
                return int(self.config["fail_status"]), dict(self.config)
            return None, dict(self.config)

    def record(self, status: int) -> None:
        with self.lock:
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1

    def stats(self) -> dict:
        with self.lock:
            return {"calls": self.calls, "by_status": dict(self.by_status), "config": dict(self.config)}


# ---- the answer: pure functions of the request body -------------------------------------


def prompt_text(body: dict) -> str:
    """All user-turn text of a generateContent request, in order."""
    texts = []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "\n".join(texts)


def first_json_object(text: str) -> dict | None:
    """The first `{...}` in the text that parses as a JSON object."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _first_name(value) -> str | None:
    """The name of the first entry of a top-N list (of strings or of {"name": ...})."""
    if isinstance(value, list) and value:
        first = value[0]
        if isinstance(first, dict):
            return first.get("name") or first.get("track") or first.get("artist")
        return str(first)
    return None


def _find(facts: dict, kind: type | tuple, *names: str):
    """The value of kind `kind` under the first matching key: exact names first, then keys
    containing one of them (facts may be nested one level)."""
    nested = [v for v in facts.values() if isinstance(v, dict)]
    for exact in (True, False):
        for scope in [facts, *nested]:
            for name in names:
                for key, value in scope.items():
                    hit = key == name if exact else name in key.lower()
                    if hit and isinstance(value, kind) and not isinstance(value, bool) and value != []:
                        return value
    return None


def grounded_text(prompt: str) -> str:
    """A short, upbeat recap that only repeats values present in the prompt's facts."""
    facts = first_json_object(prompt)
    if not facts:
        return "What a week of music! Keep pressing play."
    sentences = []
    number = (int, float)
    plays = _find(facts, number, "plays")
    minutes = _find(facts, number, "minutes_listened", "minutes")
    if plays is not None and minutes is not None:
        sentences.append(f"You pressed play {plays} times and listened for {minutes} minutes this week.")
    elif plays is not None:
        sentences.append(f"You pressed play {plays} times this week.")
    artist = _first_name(_find(facts, list, "top_artists", "artists"))
    if artist:
        sentences.append(f"{artist} was your most-played artist.")
    track = _first_name(_find(facts, list, "top_tracks", "tracks"))
    if track:
        sentences.append(f"Your song of the week was {track}.")
    sentences.append("Here's to another great week of listening!")
    return " ".join(sentences)


def _response_id(prompt: str, text: str) -> str:
    return "fake-" + hashlib.sha256((prompt + "\0" + text).encode()).hexdigest()[:16]


def generate_response(body: dict, model: str, mode: str) -> dict:
    """A GenerateContentResponse, as the REST API returns it."""
    prompt = prompt_text(body)
    prompt_tokens = max(1, len(prompt.split()))
    if mode == "blocked":
        return {
            "candidates": [{"finishReason": "SAFETY", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
            "modelVersion": model,
            "responseId": _response_id(prompt, ""),
        }
    text = grounded_text(prompt)
    if mode == "ungrounded":
        # A hallucinated figure, never derived from the prompt.
        text += " That puts you in the top 0.7319% of listeners worldwide!"
    out_tokens = max(1, len(text.split()))
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": out_tokens,
            "totalTokenCount": prompt_tokens + out_tokens,
        },
        "modelVersion": model,
        "responseId": _response_id(prompt, text),
    }


def error_body(code: int, message: str, reason: str | None = None) -> dict:
    error = {"code": code, "message": message, "status": STATUS_NAMES.get(code, "UNKNOWN")}
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        ]
    if code == 429:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
    return {"error": error}


# ---- HTTP ---------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeGemini/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from Google

    @property
    def state(self) -> FakeState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, fmt, *args):  # route the stdlib access log through logging
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _key_problem(self, query: dict) -> tuple[int, dict] | None:
        key = self.headers.get("x-goog-api-key") or (query.get("key") or [None])[0]
        if not key:
            return 403, error_body(
                403, "Method doesn't allow unregistered callers. Please use an API Key.", "API_KEY_MISSING"
            )
        if self.state.api_key is not None and key != self.state.api_key:
            return 400, error_body(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
        return None

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self._send_json(200, {"status": "ok"})
        if url.path == "/_fake/stats":
            return self._send_json(200, self.state.stats())
        match = MODEL_PATH.match(url.path)
        if match:
            problem = self._key_problem(parse_qs(url.query))
            if problem:
                return self._send_json(*problem)
            model = match["model"]
            return self._send_json(200, {"name": f"models/{model}", "displayName": model})
        return self._send_json(404, error_body(404, f"Not found: {url.path}"))

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path == "/_fake/config":
            changes = self._read_json()
            if changes is None:
                return self._send_json(400, error_body(400, "body must be a JSON object"))
            return self._send_json(200, self.state.configure(changes))
        match = GENERATE_PATH.match(url.path)
        if not match:
            self._read_json()
            return self._send_json(404, error_body(404, f"Not found: {url.path}"))
        body = self._read_json()
        problem = self._key_problem(parse_qs(url.query))
        if problem:
            self.state.record(problem[0])
            return self._send_json(*problem)
        if body is None or not body.get("contents"):
            self.state.record(400)
            return self._send_json(400, error_body(400, "contents is not specified"))
        fail_status, config = self.state.next_outcome()
        if config["delay_s"]:
            time.sleep(float(config["delay_s"]))
        if fail_status:
            self.state.record(fail_status)
            log.info("generateContent model=%s -> injected %s", match["model"], fail_status)
            message = "Resource has been exhausted (e.g. check quota)." if fail_status == 429 else "Internal error."
            return self._send_json(fail_status, error_body(fail_status, message))
        response = generate_response(body, match["model"], config["mode"])
        self.state.record(200)
        log.info("generateContent model=%s mode=%s -> 200", match["model"], config["mode"])
        return self._send_json(200, response)


def make_server(host: str, port: int, api_key: str | None, **overrides) -> ThreadingHTTPServer:
    """A ready, not yet serving, fake; port 0 picks a free port (see `server.server_port`)."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.state = FakeState(api_key, **overrides)  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> None:
    from wrapped_dev.config import load_settings

    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.fake_gemini_port)
    parser.add_argument(
        "--api-key",
        default=settings.gemini_api_key,
        help="the only key accepted (default: GEMINI_API_KEY / the demo key); '' accepts any key",
    )
    parser.add_argument("--mode", choices=["grounded", "ungrounded", "blocked"], default=None)
    parser.add_argument("--fail-next", type=int, default=None, help="fail this many calls first")
    parser.add_argument("--fail-status", type=int, default=None, help="the status of those failures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = make_server(
        args.host, args.port, args.api_key, mode=args.mode, fail_next=args.fail_next, fail_status=args.fail_status
    )
    log.info("fake Gemini listening on http://%s:%s", args.host, server.server_port)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
