"""The listener's own page, served by Airflow's api-server at /wrapped/me (plugins/weekly_wrapped_onboarding.py).

    GET  /                     the page (signed in) or the "send me a link" form
    GET  /link?token=          the recap e-mail's link (purpose "page_link"): sets the session, redirects to /
    GET  /login?token=         the e-mailed login link (purpose "page_login"): the same
    POST /login                "send me a link": mails the address's account a login link (rate-limited)
    POST /logout               ends the session
    POST /settings/email       asks to confirm a new recap address (users.addresses.ask_to_confirm)
    POST /settings/time-zone   the IANA zone weeks and recaps are counted in
    POST /settings/pause       pause or resume the recap e-mails (app.users.recaps_paused)
    POST /settings/household   household opt-in (page.household.set_opt_in)
    POST /import               upload a Spotify export; the import DAG runs for this user (page.imports)
    GET  /recaps/<week>        a past recap as it was sent, a page of its own (sandboxed, no frames)
    GET  /recaps/<week>/parts/<content-id>   its pictures

Whose page it is comes from the session cookie alone (`page.access`); no URL carries a user id.
POSTs must come from this site (Origin/Referer) and carry the form token bound to the session.
Server-rendered HTML without JavaScript, usable on a phone, colours meeting WCAG AA (`PALETTE`).
Every failure is a friendly page (one section failing leaves the others); tokens are never logged.
"""

from __future__ import annotations

import html
import logging
from datetime import date, datetime, timedelta, timezone
from typing import Callable
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo, available_timezones

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from weekly_wrapped import db
from weekly_wrapped.page import access, history, household, imports, svg
from weekly_wrapped.page.week_so_far import week_so_far
from weekly_wrapped.users import addresses, links
from weekly_wrapped.users.onboarding import (COMMON_ZONES, OnboardingConfig, add_friendly_errors,
                                             reconnect_url, same_origin)

log = logging.getLogger(__name__)

# Foreground/background pairs the page uses; tests/page check each meets WCAG AA (4.5:1).
PALETTE = {
    "text": ("#1b1b1b", "#ffffff"),
    "muted": ("#555555", "#ffffff"),
    "text_on_card": ("#1b1b1b", "#f3f5f4"),
    "muted_on_card": ("#555555", "#f3f5f4"),
    "link": ("#0b57a4", "#ffffff"),
    "link_on_card": ("#0b57a4", "#f3f5f4"),
    "button": ("#ffffff", "#0d6b34"),
    "danger": ("#ffffff", "#a42a1c"),
    "error": ("#a42a1c", "#ffffff"),
    "notice": ("#1b1b1b", "#e3f1e8"),
}

STYLE = (
    "*{box-sizing:border-box}"
    f"body{{font-family:system-ui,-apple-system,sans-serif;color:{PALETTE['text'][0]};background:#fff;"
    "margin:0;line-height:1.5;font-size:1rem}"
    "main{max-width:60rem;margin:0 auto;padding:1rem}"
    f"a{{color:{PALETTE['link'][0]}}}"
    "h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin:0 0 .5rem}"
    "h3{font-size:1.05rem;margin:1rem 0 .25rem}"
    "nav ul{list-style:none;padding:0;margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.25rem}"
    "nav a{display:inline-flex;align-items:center;min-height:44px;padding:0 .75rem;border-radius:.5rem}"
    f"section{{background:{PALETTE['text_on_card'][1]};border-radius:.75rem;padding:1rem;margin:1rem 0}}"
    f".muted{{color:{PALETTE['muted'][0]}}}"
    ".figures{display:flex;flex-wrap:wrap;gap:1.5rem}.figure b{display:block;font-size:1.8rem}"
    ".tops{display:grid;grid-template-columns:1fr;gap:1rem}"
    "@media (min-width:48rem){.tops{grid-template-columns:repeat(3,1fr)}}"
    "ol.top{padding-left:1.5rem;margin:0}ol.top li{min-height:44px;padding:.25rem 0}"
    "ol.top img{width:40px;height:40px;vertical-align:middle;margin-right:.5rem;border-radius:4px}"
    "ul.plain{list-style:none;padding:0;margin:0}ul.plain li{min-height:44px;display:flex;align-items:center}"
    "svg{max-width:100%;height:auto}"
    "label{display:block;margin-top:.75rem}"
    "input,select{font-size:1rem;min-height:44px;padding:.4rem;width:100%;max-width:24rem;display:block}"
    "input[type=file]{padding:.6rem 0}"
    f"button{{font-size:1rem;min-height:44px;min-width:44px;padding:.4rem 1.25rem;margin-top:.75rem;"
    f"background:{PALETTE['button'][1]};color:{PALETTE['button'][0]};border:0;border-radius:2rem;cursor:pointer}}"
    f"button.danger{{background:{PALETTE['danger'][1]};color:{PALETTE['danger'][0]}}}"
    "form.inline{display:inline}"
    f".error{{color:{PALETTE['error'][0]};font-weight:bold}}"
    f".notice{{background:{PALETTE['notice'][1]};padding:.75rem;border-radius:.5rem}}"
    "footer{font-size:.9rem;margin:2rem 0}"
)

PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; img-src 'self' https: data:; "
                                           "style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
                                           "base-uri 'none'"}
# A past recap is the stored e-mail's HTML: its own page, no scripts, no forms, never framed.
RECAP_HEADERS = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                 "X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox; "
                                            "default-src 'none'; img-src 'self' https: data:; "
                                            "style-src 'unsafe-inline'; frame-ancestors 'none'"}

SPOTIFY_HOME = "https://open.spotify.com"
# What a redirect after a successful POST says (the URL carries only these codes).
DONE = {
    "paused": "Recap e-mails are paused. Your listening is still collected; resume any time.",
    "resumed": "Recap e-mails are on again: the next one comes on Monday morning.",
    "time_zone": "Your time zone is saved. Weeks are counted from Monday 00:00 there.",
    "email": "We sent a link to the new address: your recaps go there once you open it.",
    "email_same": "That is already your recap address.",
    "household_on": "You joined the household: you and the others who joined see each other's shared taste.",
    "household_off": "You left the household: nobody sees your taste match any more.",
    "import": "Your export is being imported. This page shows how it goes: reload it to see.",
    "signed_out": "You are signed out.",
}


def _page(title: str, body: str, status: int = 200, headers: dict | None = None) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><main>{body}"
        "</main></body></html>", status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _base(request: Request) -> str:
    """Where this app is mounted as the browser sees it (e.g. /wrapped/me)."""
    return (request.scope.get("root_path") or "").rstrip("/")


def _parent(request: Request) -> str:
    """The mount of the sibling apps (e.g. /wrapped, whose /account pages unsubscribe and delete)."""
    return _base(request).rsplit("/", 1)[0]


def _cookie_path(request: Request) -> str:
    return _base(request) + "/"


def _sign_in_page(request: Request, message: str = "", status: int = 200, notice: str = "") -> HTMLResponse:
    error = f"<p class='error' role='alert'>{_e(message)}</p>" if message else ""
    said = f"<p class='notice' role='status'>{_e(notice)}</p>" if notice else ""
    body = (f"<h1>Your Weekly Wrapped</h1>{error}{said}"
            "<p>Your page shows your week so far, every recap we sent you, your year and your settings. "
            "Open it from the link in any recap e-mail, or get a link by e-mail:</p>"
            f"<form method='post' action='{_e(_base(request))}/login'>"
            "<label>Your recap address<input name='email' type='email' required autocomplete='email'></label>"
            "<button type='submit'>E-mail me a link</button></form>")
    return _page("Your Weekly Wrapped", body, status)


def _trouble(message: str, status: int) -> HTMLResponse:
    return _page("Something went wrong", f"<h1>Something went wrong</h1><p>{_e(message)}</p>"
                                         "<p><a href='./'>Back to your page</a></p>", status)


# --- the account row -------------------------------------------------------------------------

def _account(dsn: str, user_id: str) -> dict | None:
    with db.transaction(dsn) as cur:
        cur.execute("select user_id, display_name, email, pending_email, email_confirmed_at, time_zone, status, "
                    "recaps_paused, household_opt_in from app.users where user_id = %s", (user_id,))
        row = cur.fetchone()
        names = [c.name for c in cur.description]
    return dict(zip(names, row)) if row else None


def _set_column(dsn: str, user_id: str, column: str, value) -> None:
    if column not in ("recaps_paused", "time_zone"):  # a column name is never taken from the request
        raise ValueError(f"not a page setting: {column!r}")
    with db.transaction(dsn) as cur:
        cur.execute(f"update app.users set {column} = %s, updated_at = now() where user_id = %s", (value, user_id))


# --- sections ----------------------------------------------------------------------------------

def _change(value, unit: str) -> str:
    if value is None:
        return ""
    if value == 0:
        return "<span class='muted'>same as last week by now</span>"
    word = "more" if value > 0 else "fewer" if unit == "plays" else "less"
    return f"<span class='muted'>{_e(abs(value))} {unit} {word} than last week by now</span>"


def _top_list(title: str, items) -> str:
    if not items:
        return f"<div><h3>{_e(title)}</h3><p class='muted'>Nothing yet.</p></div>"
    rows = []
    for item in items:
        picture = (f"<img src='{_e(item.image_url)}' alt='' loading='lazy'>" if getattr(item, "image_url", None)
                   else "")
        name = _e(item.name)
        if getattr(item, "spotify_url", None):
            name = f"<a href='{_e(item.spotify_url)}' rel='noopener'>{name}</a>"
        by = f" <span class='muted'>by {_e(item.artists)}</span>" if getattr(item, "artists", None) else ""
        rows.append(f"<li>{picture}<span dir='auto'>{name}</span>{by} "
                    f"<span class='muted'>· {_e(item.plays)} plays, {_e(item.minutes)} min</span></li>")
    return f"<div><h3>{_e(title)}</h3><ol class='top'>{''.join(rows)}</ol></div>"


def _compared_note(week) -> str:
    """Why last week is not compared, when it is not (docs/recap.md's previous_week_status)."""
    why = {"partial": "Last week is only partly known (your history starts in it, or some plays could not be "
                      "fetched), so it is not compared.",
           "not_known": "There is no last week to compare with yet."}.get(week.compared)
    return f"<p class='muted'>{_e(why)}</p>" if why else ""


def week_section(dsn: str, user_id: str, now: datetime) -> str:
    week = week_so_far(dsn, user_id, now)
    this = week.this_week
    clock = svg.listening_clock(this.listening_clock) if this.plays else ""
    return (
        "<section id='week' aria-labelledby='week-h'><h2 id='week-h'>Your week so far</h2>"
        f"<p class='muted'>Since Monday 00:00 in {_e(week.time_zone)}.</p>"
        "<div class='figures'>"
        f"<p class='figure' data-figure='minutes'><b>{_e(this.minutes)}</b> minutes "
        f"{_change(week.minutes_change, 'minutes')}</p>"
        f"<p class='figure' data-figure='plays'><b>{_e(this.plays)}</b> plays {_change(week.plays_change, 'plays')}</p>"
        "</div>"
        f"{_compared_note(week)}"
        f"<div class='tops'>{_top_list('Top artists', this.top_artists)}{_top_list('Top tracks', this.top_tracks)}"
        f"{_top_list('Top albums', this.top_albums)}</div>"
        f"{('<h3>When you listened</h3>' + clock) if clock else ''}"
        f"<p class='muted'>{_e(week.based_on)} <a href='./#week'>Reload</a> to see new plays.</p></section>")


def recaps_section(dsn: str, user_id: str, base: str) -> str:
    recaps = history.past_recaps(dsn, user_id)
    if not recaps:
        items = "<p class='muted'>No recap has been sent to you yet: the first comes on a Monday morning.</p>"
    else:
        items = "<ul class='plain'>" + "".join(
            f"<li><a href='{_e(base)}/recaps/{_e(r.week_start.isoformat())}'>Week of {_e(r.week_start.isoformat())}"
            f"</a>&nbsp;<span class='muted'>{_e(r.subject or '')}</span></li>" for r in recaps) + "</ul>"
    return f"<section id='recaps' aria-labelledby='recaps-h'><h2 id='recaps-h'>Past recaps</h2>{items}</section>"


def year_section(dsn: str, user_id: str, year: int, now: datetime) -> str:
    view = history.year_view(dsn, user_id, year, now)
    months = "".join(
        f"<li><b>{_e(month.month.strftime('%B'))}</b>: "
        + ", ".join(_link(a["name"], a.get("spotify_url")) for a in month.artists) + "</li>"
        for month in view.months)
    months = f"<h3>Top artists by month</h3><ul>{months}</ul>" if months else ""
    return (f"<section id='year' aria-labelledby='year-h'><h2 id='year-h'>{year} week by week</h2>"
            f"{svg.heatmap(view.weeks, year)}<details><summary>Every week's minutes as a table</summary>"
            f"{svg.heatmap_table(view.weeks, year)}</details>{months}</section>")


def household_section(dsn: str, account: dict, week_start: date, base: str, csrf: str) -> str:
    opted_in = bool(account.get("household_opt_in"))
    body = ""
    if opted_in:
        match = household.taste_match(dsn, account["user_id"], week_start)
        if match is None or not match.housemates:
            body = "<p class='muted'>Nobody else has joined the household yet.</p>"
        for mate in (match.housemates if match else ()):
            artists = "".join(
                f"<li>{_link(a.name, a.spotify_url)} <span class='muted'>· "
                f"{_e(household.first_heard_label(a, mate))}</span></li>" for a in mate.shared_artists)
            tracks = "".join(f"<li>{_link(t.name, t.spotify_url)}"
                             f"{(' <span class=muted>by ' + _e(t.artists) + '</span>') if t.artists else ''}</li>"
                             for t in mate.shared_tracks)
            body += (f"<h3>{_e(mate.name)}</h3><p>{_e(household.summary(mate))}</p>"
                     f"{('<ul>' + artists + '</ul>') if artists else ''}"
                     f"{('<ul>' + tracks + '</ul>') if tracks else ''}")
    explain = ("You are in the household: the others who joined see your shared artists and tracks, and you theirs."
               if opted_in else "Join the household to see which artists and tracks you share with the other people "
                                "on this Weekly Wrapped who joined too. Nobody sees you unless you join.")
    form = _post_form(f"{base}/settings/household", csrf, "Leave the household" if opted_in else "Join the household",
                      {"on": "false" if opted_in else "true"})
    return (f"<section id='household' aria-labelledby='household-h'><h2 id='household-h'>The household</h2>"
            f"<p>{explain}</p>{body}{form}</section>")


def _link(name: str, url: str | None) -> str:
    return f"<a href='{_e(url)}' rel='noopener'>{_e(name)}</a>" if url else _e(name)


def _post_form(action: str, csrf: str, label: str, fields: dict | None = None, danger: bool = False) -> str:
    hidden = "".join(f"<input type='hidden' name='{_e(k)}' value='{_e(v)}'>" for k, v in (fields or {}).items())
    return (f"<form method='post' action='{_e(action)}'><input type='hidden' name='csrf' value='{_e(csrf)}'>"
            f"{hidden}<button type='submit'{' class=danger' if danger else ''}>{_e(label)}</button></form>")


def _import_state(run: imports.ImportRun, zone: ZoneInfo) -> str:
    when = run.uploaded_at.astimezone(zone).strftime("%d %b %H:%M")
    said = {"queued": "waiting to start", "running": "importing now", "success": "done",
            "failed": "failed: the file could not be imported (is it Spotify's export, unchanged?)"}.get(
        run.state, "state not known just now")
    report = ""
    if run.report:  # ingest.history_import.ImportReport.as_dict()
        r = run.report
        files = (r.get("files") or {}).get("read", 0)
        span = (f", played {_e(str(r['first_played_at'])[:10])} to {_e(str(r['last_played_at'])[:10])}"
                if r.get("first_played_at") and r.get("last_played_at") else "")
        report = (f" · {_e(r.get('plays', 0))} plays and {_e(r.get('skip_events', 0))} skips imported from "
                  f"{_e(files)} files{span}; {_e(sum((r.get('skipped') or {}).values()))} rows skipped "
                  "(podcasts, videos, duplicates). New plays show in your pages after the next summary build.")
    return f"<li data-import-state='{_e(run.state)}'>Uploaded {_e(when)}: {_e(said)}{report}</li>"


def settings_section(account: dict, base: str, parent: str, csrf: str, link_secret: str,
                     recent: list[imports.ImportRun]) -> str:
    zone = ZoneInfo(account["time_zone"])
    pending = (f"<p class='muted'>Waiting for you to confirm <b>{_e(account['pending_email'])}</b> "
               "(we e-mailed it a link).</p>" if account.get("pending_email") else "")
    options = "".join(f"<option value='{_e(z)}'>" for z in COMMON_ZONES)
    paused = bool(account.get("recaps_paused"))
    unsubscribed = account.get("status") == "unsubscribed"
    pause = ("<p>You unsubscribed, so no recap is sent. To get them again, connect Spotify once more on the "
             f"<a href='{_e(parent)}/connect'>Weekly Wrapped page</a>.</p>" if unsubscribed else
             f"<p>{'Recap e-mails are paused.' if paused else 'A recap e-mail comes every Monday morning.'}</p>"
             + _post_form(f"{base}/settings/pause", csrf, "Resume e-mails" if paused else "Pause e-mails",
                          {"paused": "false" if paused else "true"}))
    unsubscribe = links.sign(link_secret, "unsubscribe", {"user_id": account["user_id"]})
    delete = links.sign(link_secret, "delete_request", {"user_id": account["user_id"]})
    runs = "".join(_import_state(r, zone) for r in recent)
    return (
        "<section id='settings' aria-labelledby='settings-h'><h2 id='settings-h'>Settings</h2>"
        "<h3>Recap address</h3>"
        f"<p>Recaps go to <b>{_e(account['email'])}</b>.</p>{pending}"
        f"<form method='post' action='{_e(base)}/settings/email'><input type='hidden' name='csrf' value='{_e(csrf)}'>"
        "<label>New address (we e-mail it a link to confirm)<input name='email' type='email' required "
        "autocomplete='email'></label><button type='submit'>Change address</button></form>"
        "<h3>Time zone</h3>"
        f"<form method='post' action='{_e(base)}/settings/time-zone'>"
        f"<input type='hidden' name='csrf' value='{_e(csrf)}'>"
        f"<label>Your weeks start Monday 00:00 in<input name='time_zone' list='zones' required "
        f"value='{_e(account['time_zone'])}'></label><datalist id='zones'>{options}</datalist>"
        "<button type='submit'>Save time zone</button></form>"
        f"<h3>Recap e-mails</h3>{pause}"
        "<h3>Import your Spotify history</h3>"
        "<p>Spotify sends your whole history if you ask for it (Spotify account, Privacy, \"Download your data\"). "
        "Upload the zip it sends, as it is: your past plays join your pages.</p>"
        f"<form method='post' action='{_e(base)}/import' enctype='multipart/form-data'>"
        f"<input type='hidden' name='csrf' value='{_e(csrf)}'>"
        "<label>Spotify's zip<input name='export' type='file' accept='.zip,application/zip' required></label>"
        "<button type='submit'>Upload and import</button></form>"
        f"{('<ul class=imports>' + runs + '</ul>') if runs else ''}"
        "<h3>Leaving</h3><ul class='plain'>"
        f"<li><a href='{_e(parent)}/account/unsubscribe?token={_e(unsubscribe)}'>Unsubscribe from the e-mails</a></li>"
        f"<li><a href='{_e(parent)}/account/delete?token={_e(delete)}'>Delete my data</a></li></ul>"
        f"{_post_form(f'{base}/logout', csrf, 'Sign out')}</section>")


FOOTER = (f"<footer class='muted'>Listening data from <b>Spotify</b>. Track, album and artist names, pictures and "
          f"links come from Spotify. <a href='{SPOTIFY_HOME}' rel='noopener'><b>OPEN SPOTIFY</b></a></footer>")


def _safely(name: str, render: Callable[[], str], title: str) -> str:
    """One section; if it fails, a note in its place and the rest of the page still shows."""
    try:
        return render()
    except Exception as exc:
        log.error("page section %s failed: %s", name, type(exc).__name__)
        return (f"<section id='{_e(name)}'><h2>{_e(title)}</h2><p class='muted'>This part could not be shown just "
                "now. Please try again in a few minutes.</p></section>")


# --- the app -----------------------------------------------------------------------------------

def create_page_app(config_factory: Callable[[], OnboardingConfig] | None = None, *,
                    runs_factory: Callable[[], imports.Runs] | None = None,
                    import_dir_factory: Callable[[], str] | None = None,
                    clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The page. `config_factory` gives an OnboardingConfig per request (dsn, link_secret, public_url);
    `runs_factory` what triggers and reads import runs (default: Airflow's own, in the api-server);
    `import_dir_factory` the folder uploads go to (default: Variable wrapped_import_dir)."""
    if config_factory is None:
        config_factory = OnboardingConfig.from_airflow
    if runs_factory is None:
        runs_factory = imports.AirflowImports
    if import_dir_factory is None:
        def import_dir_factory() -> str:
            from weekly_wrapped.airflow.connections import variable

            return variable("wrapped_import_dir")
    now = clock or (lambda: datetime.now(timezone.utc))

    app = FastAPI(title="Weekly Wrapped: your page", docs_url=None, redoc_url=None, openapi_url=None)

    add_friendly_errors(app, _trouble, "your page", "That did not work just now, and nothing was changed by "
                                                    "this attempt. Please try again in a few minutes.")

    def signed_in(config: OnboardingConfig, request: Request) -> str | None:
        return access.session_user(config.dsn, config.link_secret, request.cookies.get(access.SESSION_COOKIE))

    def open_session(request: Request, config: OnboardingConfig, user_id: str) -> Response:
        response = RedirectResponse(f"{_base(request)}/", status_code=303, headers=PAGE_HEADERS)
        response.set_cookie(access.SESSION_COOKIE, access.session_cookie(config.link_secret, user_id),
                            max_age=access.SESSION_MAX_AGE_S, path=_cookie_path(request), httponly=True,
                            samesite="lax", secure=config.public_url.startswith("https://"))
        return response

    def link_opened(purpose: str):
        async def handler(request: Request, token: str = "") -> Response:
            config = await run_in_threadpool(config_factory)
            try:
                user_id = await run_in_threadpool(access.user_of_link, config.dsn, config.link_secret, purpose, token)
            except links.LinkError as exc:
                why = "This link has expired." if exc.expired else "This link is not valid."
                return _sign_in_page(request, f"{why} Get a new one here.", 400)
            except LookupError:
                return _sign_in_page(request, "There is no account for this link any more.", 400)
            return open_session(request, config, user_id)
        return handler

    app.add_api_route("/link", link_opened("page_link"), methods=["GET"])
    app.add_api_route("/login", link_opened("page_login"), methods=["GET"])

    @app.post("/login")
    async def send_login_link(request: Request) -> HTMLResponse:
        config = await run_in_threadpool(config_factory)
        if not same_origin(request, config):
            return _sign_in_page(request, "This form can only be sent from Weekly Wrapped's own page.", 403)
        email = (await _form(request)).get("email", "")
        await run_in_threadpool(access.mail_login_link, config.dsn, config.link_secret, config.public_url, email)
        # The same answer whether or not the address has an account: the page tells nobody who does.
        minutes = links.MAX_AGE_S["page_login"] // 60
        return _sign_in_page(request, notice=f"If that address gets Weekly Wrapped recaps, it now has an e-mail with "
                                             f"a link to your page. The link works for {minutes} minutes.")

    @app.get("/")
    async def your_page(request: Request, done: str = "") -> HTMLResponse:
        config = await run_in_threadpool(config_factory)
        user_id = await run_in_threadpool(signed_in, config, request)
        if user_id is None:
            return _sign_in_page(request, notice=DONE.get(done, "") if done == "signed_out" else "")
        return await run_in_threadpool(render_page, config, request, user_id, DONE.get(done, ""))

    def render_page(config: OnboardingConfig, request: Request, user_id: str, notice: str = "",
                    error: str = "", status: int = 200) -> HTMLResponse:
        account = _account(config.dsn, user_id)
        if account is None:  # deleted between the check and now
            return _sign_in_page(request)
        base, parent = _base(request), _parent(request)
        csrf = access.form_token(config.link_secret, request.cookies.get(access.SESSION_COOKIE, ""))
        at = now()
        local = at.astimezone(ZoneInfo(account["time_zone"]))
        monday = local.date() - timedelta(days=local.weekday())
        try:
            recent = imports.recent_imports(config.dsn, runs_factory(), user_id)
        except Exception as exc:
            log.error("imports not read: %s", type(exc).__name__)
            recent = []
        name = account.get("display_name") or "you"
        if account.get("status") == "needs_reauth":  # Spotify refused the stored token: nothing is polled
            url = reconnect_url(config.public_url, config.link_secret, user_id)
            reconnect = (f"<p class='error' role='alert'>Spotify stopped letting us read your plays. "
                         f"<a href='{_e(url)}'>Connect Spotify again</a> to keep your pages and recaps going.</p>")
        else:
            reconnect = ""
        said = f"<p class='notice' role='status'>{_e(notice)}</p>" if notice else ""
        error = f"<p class='error' role='alert'>{_e(error)}</p>" if error else ""
        nav = ("<nav aria-label='Sections'><ul><li><a href='#week'>Week so far</a></li><li><a href='#recaps'>Past "
               "recaps</a></li><li><a href='#year'>Year</a></li><li><a href='#household'>Household</a></li>"
               "<li><a href='#settings'>Settings</a></li></ul></nav>")
        body = (f"<h1>Your Weekly Wrapped</h1><p>Hello, {_e(name)}.</p>{reconnect}{said}{error}{nav}"
                + _safely("week", lambda: week_section(config.dsn, user_id, at), "Your week so far")
                + _safely("recaps", lambda: recaps_section(config.dsn, user_id, base), "Past recaps")
                + _safely("year", lambda: year_section(config.dsn, user_id, local.year, at),
                          f"{local.year} week by week")
                + _safely("household", lambda: household_section(config.dsn, account, monday, base, csrf),
                          "The household")
                + settings_section(account, base, parent, csrf, config.link_secret, recent)
                + FOOTER)
        return _page("Your Weekly Wrapped", body, status)

    async def checked_post(request: Request, form: dict | None = None):
        """(config, user_id, form) of a POST from this site's own page, or the response refusing it."""
        config = await run_in_threadpool(config_factory)
        if not same_origin(request, config):
            return _page("Not sent", "<h1>Not sent</h1><p>This form can only be sent from your Weekly Wrapped page. "
                                     f"<a href='{_e(_base(request))}/'>Open it here</a>.</p>", 403)
        user_id = await run_in_threadpool(signed_in, config, request)
        if user_id is None:
            return _sign_in_page(request, "Your session has ended: get a new link to your page.", 403)
        form = form if form is not None else await _form(request)
        if not access.form_token_ok(config.link_secret, request.cookies.get(access.SESSION_COOKIE),
                                    form.get("csrf", "")):
            return _page("Not sent", "<h1>Not sent</h1><p>This form came from elsewhere or from an old page. "
                                     f"<a href='{_e(_base(request))}/'>Open your page</a> and send it again.</p>", 403)
        return config, user_id, form

    def done(request: Request, code: str) -> RedirectResponse:
        return RedirectResponse(f"{_base(request)}/?done={code}", status_code=303, headers=PAGE_HEADERS)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        config = checked[0]
        response = done(request, "signed_out")
        response.delete_cookie(access.SESSION_COOKIE, path=_cookie_path(request), httponly=True, samesite="lax",
                               secure=config.public_url.startswith("https://"))
        return response

    @app.post("/settings/pause")
    async def pause(request: Request) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        config, user_id, form = checked
        paused = form.get("paused") == "true"
        await run_in_threadpool(_set_column, config.dsn, user_id, "recaps_paused", paused)
        return done(request, "paused" if paused else "resumed")

    @app.post("/settings/time-zone")
    async def time_zone(request: Request) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        config, user_id, form = checked
        zone = form.get("time_zone", "")
        if zone not in available_timezones():
            return await run_in_threadpool(render_page, config, request, user_id, "",
                                           f"{zone[:60]!r} is not a time zone we know: pick one like Europe/Berlin.",
                                           400)
        await run_in_threadpool(_set_column, config.dsn, user_id, "time_zone", zone)
        return done(request, "time_zone")

    @app.post("/settings/email")
    async def email(request: Request) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        config, user_id, form = checked
        account = await run_in_threadpool(_account, config.dsn, user_id)
        try:
            await run_in_threadpool(addresses.ask_to_confirm, config, user_id, form.get("email", ""))
        except addresses.AddressError:
            return await run_in_threadpool(render_page, config, request, user_id, "",
                                           "That is not an e-mail address we can send to.", 400)
        same = account and account["email_confirmed_at"] and account["email"].lower() == form.get("email", "").lower()
        return done(request, "email_same" if same else "email")

    @app.post("/settings/household")
    async def household_opt_in(request: Request) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        config, user_id, form = checked
        on = form.get("on") == "true"
        await run_in_threadpool(household.set_opt_in, config.dsn, user_id, on)
        return done(request, "household_on" if on else "household_off")

    @app.post("/import")
    async def import_export(request: Request) -> Response:
        config = await run_in_threadpool(config_factory)
        if not same_origin(request, config):
            return await checked_post(request, {})
        async with request.form(max_files=1, max_fields=5) as form:
            checked = await checked_post(request, {"csrf": str(form.get("csrf", ""))})
            if isinstance(checked, Response):
                return checked
            config, user_id, _ = checked
            upload = form.get("export")
            if upload is None or isinstance(upload, str):
                return await run_in_threadpool(render_page, config, request, user_id, "", "Choose the zip first.", 400)
            import_dir = await run_in_threadpool(import_dir_factory)
            try:
                path = await run_in_threadpool(imports.save_upload, import_dir, user_id, upload.file)
            except imports.UploadError as exc:
                return await run_in_threadpool(render_page, config, request, user_id, "", str(exc), 400)
        await run_in_threadpool(imports.start_import, config.dsn, runs_factory(), user_id, path)
        return done(request, "import")

    @app.get("/recaps/{week}")
    async def past_recap(request: Request, week: str) -> Response:
        config = await run_in_threadpool(config_factory)
        user_id = await run_in_threadpool(signed_in, config, request)
        if user_id is None:
            return _sign_in_page(request, "Open your page first: get a link by e-mail.", 403)
        sent = await run_in_threadpool(_sent_recap, config.dsn, user_id, week, _base(request))
        if sent is None:
            return _trouble("There is no recap for that week.", 404)
        return HTMLResponse(sent.html, headers=RECAP_HEADERS)

    @app.get("/recaps/{week}/parts/{content_id}")
    async def recap_part(request: Request, week: str, content_id: str) -> Response:
        config = await run_in_threadpool(config_factory)
        user_id = await run_in_threadpool(signed_in, config, request)
        if user_id is None:
            return Response(status_code=403)
        sent = await run_in_threadpool(_sent_recap, config.dsn, user_id, week, _base(request))
        found = sent.part(content_id) if sent is not None else None
        if not found or not str(found[1]).startswith("image/"):
            return Response(status_code=404)
        data, mime = found
        return Response(data, media_type=mime, headers={"Cache-Control": "private, max-age=86400",
                                                        "X-Content-Type-Options": "nosniff"})

    return app


def _sent_recap(dsn: str, user_id: str, week: str, base: str):
    """The user's recap of that week as sent, None when the week is not a date or has none."""
    try:
        week_start = date.fromisoformat(week)
    except ValueError:
        return None
    return history.sent_recap(dsn, user_id, week_start, base + "/recaps/{week_start}/parts/{content_id}")


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1].strip() for k, v in parse_qs(body).items()}


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""
    def luminance(colour: str) -> float:
        channels = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)

