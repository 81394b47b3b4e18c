"""Keep the OAuth code and state (and invite codes) out of the api-server's access log.

Spotify's redirect to `/wrapped/callback?code=...&state=...` is an ordinary GET, and access
logs write query strings. Airflow 3's api-server logs each request through structlog
(`http.access`, fields `path` and `query`; it masks only secret-looking parameter names);
uvicorn and gunicorn, when their own access logs are on, log through stdlib logging
(`uvicorn.access`, `gunicorn.access`, the path with its query in the record's args).
`install()` adds a filter to each that replaces the query of every `/wrapped/` path with
`[redacted]`; the plugin calls it when the api-server loads it.
"""

from __future__ import annotations

import logging

PREFIX = "/wrapped/"
REDACTED = "[redacted]"
STDLIB_ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")


def redact_path(path_with_query: str) -> str:
    """`/wrapped/callback?code=x` -> `/wrapped/callback?[redacted]`; other paths unchanged."""
    path, sep, _ = path_with_query.partition("?")
    return f"{path}?{REDACTED}" if sep and PREFIX in path + "/" else path_with_query


def redact_event(logger, method_name: str, event_dict: dict) -> dict:
    """A structlog processor: Airflow's access events of `/wrapped/` paths lose their query."""
    path = event_dict.get("path")
    if isinstance(path, str) and (PREFIX in path + "/") and event_dict.get("query"):
        event_dict["query"] = REDACTED
    return event_dict


class RedactWrappedQueries(logging.Filter):
    """A stdlib filter for uvicorn's / gunicorn's access records: redacts every `/wrapped/...?...` argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_path(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        elif isinstance(record.args, dict):  # gunicorn's atoms: r (request line), U (path), q (query)
            args = dict(record.args)
            if PREFIX in str(args.get("U", "")) + "/":
                args["q"] = REDACTED
            if isinstance(args.get("r"), str):
                method, _, rest = args["r"].partition(" ")
                target, _, version = rest.partition(" ")
                args["r"] = f"{method} {redact_path(target)} {version}".strip()
            record.args = args
        if isinstance(record.msg, str) and PREFIX in record.msg and "?" in record.msg:
            record.msg = " ".join(redact_path(word) if PREFIX in word else word for word in record.msg.split(" "))
        return True


def install() -> None:
    """Add the filters (idempotent): stdlib access loggers, and structlog's configured processors."""
    for name in STDLIB_ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactWrappedQueries) for f in logger.filters):
            logger.addFilter(RedactWrappedQueries())
    try:
        import structlog
    except ImportError:
        return
    # Loggers already made share this very list, so adding to it reaches them too.
    processors = structlog.get_config()["processors"]
    if redact_event not in processors:
        processors.insert(0, redact_event)
