"""The account pages behind the links in e-mails, served by Airflow's api-server at /wrapped/account:

    GET  /confirm?token=          "confirm this address?" with a button; POST /confirm confirms
    GET  /unsubscribe?token=      "stop the recaps?" with a button; POST /unsubscribe?token= stops them
                                  (also RFC 8058's one-click POST from the List-Unsubscribe header)
    GET  /delete[?token=]         ask for the deletion: type the address, or come from a recap's link;
    POST /delete                  mails the account's address a confirmation link
    GET  /delete/confirm?token=   "delete everything?" with a button; POST /delete/confirm deletes

A GET never changes anything: mail scanners open links. The POSTs need no cookie or CSRF token:
the signed token in the URL or form is the proof (RFC 8058 one-click posts carry no cookies).
Every failure is a friendly page, never a 500; tokens are never logged.
"""

from __future__ import annotations

import functools
import html
import logging
from typing import Callable
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from weekly_wrapped.users import addresses, leaving, links

log = logging.getLogger(__name__)

STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}"
         "label{display:block;margin-top:1rem}input,button{font-size:1rem;padding:.4rem;width:100%}"
         "button{margin-top:1.5rem;background:#1db954;color:#fff;border:0;border-radius:2rem;cursor:pointer}"
         "button.danger{background:#c0392b}")


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A small page; tokens in its URL stay out of Referer headers and caches."""
    return HTMLResponse(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


def bad_link(exc: links.LinkError) -> HTMLResponse:
    why = ("This link has expired." if exc.expired else
           "This link is not valid (it may be incomplete: copy the whole link from the e-mail).")
    return page("Link not valid", f"<p>{why}</p>", status=400)


def button_form(action: str, token: str, label: str, danger: bool = False) -> str:
    return (f"<form method='post' action='{html.escape(action)}'>"
            f"<input type='hidden' name='token' value='{html.escape(token)}'>"
            f"<button type='submit'{' class=danger' if danger else ''}>{html.escape(label)}</button></form>")


async def form_of(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1].strip() for k, v in parse_qs(body).items()}


def friendly(handler):
    """Any unexpected failure (database down, SMTP refused) becomes a 503 page, logged without details
    that could hold a token or an address."""

    @functools.wraps(handler)
    async def wrapped(*args, **kwargs):
        try:
            return await handler(*args, **kwargs)
        except links.LinkError as exc:
            return bad_link(exc)
        except Exception as exc:
            log.error("account page %s failed: %s", handler.__name__, type(exc).__name__)
            return page("Something went wrong", "<p>That did not work just now, and nothing was changed by "
                                                 "this attempt. Please try again in a few minutes.</p>", status=503)

    return wrapped


def create_account_app(config_factory: Callable | None = None,
                       kafka_config_factory: Callable[[], dict] | None = None) -> FastAPI:
    """The pages; `config_factory` gives an `OnboardingConfig` (dsn, link_secret, public_url) per
    request, `kafka_config_factory` the librdkafka settings used to read the topics' retention."""
    if config_factory is None:
        from weekly_wrapped.users.onboarding import OnboardingConfig

        config_factory = OnboardingConfig.from_airflow
    if kafka_config_factory is None:
        def kafka_config_factory() -> dict:
            from weekly_wrapped.airflow.connections import kafka_config

            return kafka_config()

    app = FastAPI(title="Weekly Wrapped account", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/confirm")
    @friendly
    async def confirm_page(token: str = "") -> HTMLResponse:
        config = await run_in_threadpool(config_factory)
        email = links.verify(config.link_secret, "confirm_email", token)["email"]
        return page("Confirm your address",
                    f"<p>Send your weekly Spotify recap to <b>{html.escape(email)}</b>?</p>"
                    + button_form("confirm", token, "Yes, confirm this address"))

    @app.post("/confirm")
    @friendly
    async def confirm(request: Request) -> HTMLResponse:
        token = (await form_of(request)).get("token", "")
        config = await run_in_threadpool(config_factory)
        done = await run_in_threadpool(addresses.confirm, config.dsn, config.link_secret, token)
        if done.outcome == "replaced":
            return page("Address not changed",
                        f"<p><b>{html.escape(done.email)}</b> was replaced by another address since this e-mail "
                        "was sent, so this link does nothing. Use the link in the newest e-mail.</p>", status=409)
        return page("Address confirmed", f"<p>Your recaps go to <b>{html.escape(done.email)}</b>, every Monday "
                                         "morning.</p>")

    @app.get("/unsubscribe")
    @friendly
    async def unsubscribe_page(token: str = "") -> HTMLResponse:
        config = await run_in_threadpool(config_factory)
        links.verify(config.link_secret, "unsubscribe", token)
        return page("Unsubscribe", "<p>Stop the weekly recap e-mails? Your listening data stays until you "
                                   "<a href='delete'>delete it</a>.</p>"
                    + button_form(f"unsubscribe?token={token}", token, "Unsubscribe"))

    @app.post("/unsubscribe")
    @friendly
    async def unsubscribe(request: Request, token: str = "") -> HTMLResponse:
        # RFC 8058: the mail client posts "List-Unsubscribe=One-Click" to the header's URL (token in it).
        token = token or (await form_of(request)).get("token", "")
        config = await run_in_threadpool(config_factory)
        await run_in_threadpool(leaving.unsubscribe, config.dsn, config.link_secret, token)
        return page("Unsubscribed", "<p>You will get no more recap e-mails. To get them again, connect Spotify "
                                    "once more on the <a href='../connect'>Weekly Wrapped page</a>.</p>"
                                    "<p>Your listening data is kept until you <a href='delete'>delete it</a>.</p>")

    @app.get("/delete")
    @friendly
    async def delete_page(token: str = "") -> HTMLResponse:
        if token:
            config = await run_in_threadpool(config_factory)
            links.verify(config.link_secret, "delete_request", token)
            return page("Delete my data", "<p>We will e-mail your recap address a link that deletes everything "
                                          "Weekly Wrapped holds about you.</p>"
                        + button_form("delete", token, "E-mail me the link"))
        return page("Delete my data",
                    "<p>Enter the address your recaps go to. We will e-mail it a link that deletes everything "
                    "Weekly Wrapped holds about you: your account, listening history, statistics and sent "
                    "e-mails.</p><form method='post' action='delete'>"
                    "<label>Your recap address<input name='email' type='email' required></label>"
                    "<button type='submit'>E-mail me the link</button></form>")

    @app.post("/delete")
    @friendly
    async def request_deletion(request: Request) -> HTMLResponse:
        form = await form_of(request)
        config = await run_in_threadpool(config_factory)
        await run_in_threadpool(functools.partial(leaving.request_deletion, config, email=form.get("email", ""),
                                                  token=form.get("token", "")))
        # The same answer whether or not the address has an account: the page tells nobody who does.
        return page("Check your e-mail", "<p>If that address gets Weekly Wrapped recaps, it now has an e-mail with "
                                         f"a link that deletes your data. The link works for "
                                         f"{links.MAX_AGE_S['delete_data'] // 3600} hours.</p>")

    @app.get("/delete/confirm")
    @friendly
    async def delete_confirm_page(token: str = "") -> HTMLResponse:
        config = await run_in_threadpool(config_factory)
        links.verify(config.link_secret, "delete_data", token)
        return page("Delete my data", "<p>This deletes your account, your listening history, your weekly "
                                      "statistics and the recaps sent to you. It cannot be undone.</p>"
                    + button_form("confirm", token, "Delete everything", danger=True))

    @app.post("/delete/confirm")
    @friendly
    async def delete_confirm(request: Request) -> HTMLResponse:
        token = (await form_of(request)).get("token", "")
        config = await run_in_threadpool(config_factory)
        deletion = await run_in_threadpool(leaving.delete_confirmed, config.dsn, config.link_secret, token)

        def retention() -> leaving.Retention:
            try:
                kafka = kafka_config_factory()
            except Exception:
                kafka = None
            return leaving.kafka_retention(kafka)

        said = (await run_in_threadpool(retention)).describe()
        gone = ("Everything Weekly Wrapped held about you is deleted: your account, your Spotify token, your "
                "listening history, your weekly statistics and the record of e-mails sent to you."
                if deletion.total else "There was nothing left to delete: your data was already gone.")
        return page("Your data is gone", f"<p>{gone}</p><p>{html.escape(said)}</p>")

    return app
