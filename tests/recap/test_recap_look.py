"""The recap as a reader sees it: each e-mail rendered in headless Chromium (Debian's
`chromium` package), the way a mail client shows it (cid: pictures from the message's own
parts, album art from the network).

A recap fails when a picture is missing (a cid: reference without its part, a part nobody
references, an <img> that does not load) or when anything is wider than the 600 px layout.
Screenshots are kept as test artefacts in test-artifacts/recap/ (git-ignored), one per case,
for people to look at.
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import json
import re
import shutil
import subprocess
import threading
from datetime import date
from decimal import Decimal
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from recap_helpers import make_row

from weekly_wrapped.recap.content import Intro, Recommendation
from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.render import build_message
from wrapped_dev.config import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts" / "recap"
LAYOUT_WIDTH = 600
NARROW_WIDTH = 500  # a narrow window (headless Chromium lays out no narrower)

# Runs after every picture loaded or failed; leaves its findings in the DOM for --dump-dom.
PROBE = """
<script>
window.addEventListener('load', () => setTimeout(() => {
  const rights = [...document.querySelectorAll('body *')].map(e => e.getBoundingClientRect().right);
  const found = {
    viewport: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    widest: Math.max(...rights),
    height: document.documentElement.scrollHeight,
    images: [...document.images].map(i => ({src: i.getAttribute('src').slice(0, 60), alt: i.alt,
                                            loaded: i.complete && i.naturalWidth > 0})),
    dark: matchMedia('(prefers-color-scheme: dark)').matches,
    card: getComputedStyle(document.querySelector('table.card')).backgroundColor,
  };
  const pre = document.createElement('pre');
  pre.id = 'look-result';
  pre.style.display = 'none';
  pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
}, 0));
</script>
"""


def cover_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 60, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cover_server():
    """Album art over HTTP, as Spotify's image host would serve it; yields the base URL."""
    png = cover_png()

    class Covers(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Covers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    assert path, "headless Chromium is needed: apt-get install chromium (scripts/bootstrap.sh installs it)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return path


def with_covers(row: dict, base: str) -> dict:
    """The row with every picture URL pointing at the local cover server."""
    for column in ("top_tracks", "top_albums", "top_artists"):
        for entry in row.get(column) or []:
            if entry.get("image_url"):
                entry["image_url"] = f"{base}/{entry['id']}.png"
    return row


AI_INTRO = Intro(
    "Björk led your week, with Massive Attack close behind.",
    "gemini",
    personality="A night owl who saves the big songs for Friday.",
    recommendations=(
        Recommendation("Moloko", "https://open.spotify.com/artist/moloko"),
        Recommendation("Morcheeba", "https://open.spotify.com/artist/morcheeba"),
    ),
)
TEMPLATE_INTRO = Intro("You played 87 tracks this week, most of them by Björk.", "template")


def first_week_row() -> dict:
    clock = [[0.0] * 24 for _ in range(7)]
    clock[5][20], clock[6][10] = 25.0, 12.3
    return make_row(
        plays=11, minutes_listened=Decimal("37.3"), distinct_tracks=9, distinct_artists=6, days_with_plays=2,
        longest_streak_days=2, longest_streak_running_days=2, discoveries_available=False, weeks_until_discoveries=8,
        new_tracks=None, new_artists=None, top_new_artists=None, previous_week_status="not_known",
        previous_week_plays=None, previous_week_minutes_listened=None, plays_change=None,
        minutes_listened_change=None, skip_rate=None, skip_events=None, top_skipped_tracks=None,
        plays_estimated_minutes=11, missed_hours=Decimal("118.5"), estimated_missed_plays=26,
        minutes_by_day=[{"date": f"2026-11-{16 + i}", "minutes": sum(clock[i])} for i in range(7)],
        listening_clock=clock,
    )


def pending_metadata_row() -> dict:
    row = make_row(plays_pending_metadata=40, plays_estimated_minutes=87, distinct_artists=2, distinct_tracks=3)
    row["top_tracks"] = row["top_tracks"][:1]
    row["top_artists"] = row["top_artists"][:2]
    # known only by name (from an export, before the lookup): no link, no picture
    row["top_albums"] = [{"rank": 1, "id": "name:album:x", "name": "Post", "artists": "Björk", "plays": 5,
                          "minutes": 20.0, "image_url": None, "spotify_url": None}]
    return row


def long_names_row() -> dict:
    row = make_row(display_name="Maximiliane-Alexandra " * 6, longest_streak_days=7, longest_streak_running_days=143)
    row["top_tracks"][0]["name"] = "Symphony No. 9 in D minor, Op. 125 'Choral': IV. Presto – Allegro assai – " * 4
    row["top_tracks"][1]["name"] = "Supercalifragilisticexpialidocious" * 5  # one word, no break opportunity
    row["top_tracks"][1]["artists"] = ", ".join(f"Featured Artist Number {i}" for i in range(12))
    row["top_albums"][0]["name"] = "The Complete Recordings, Remastered and Expanded Deluxe Anniversary Edition " * 3
    row["top_artists"][0]["name"] = "The Artist Formerly Known As The Longest Band Name In The Whole Wide World"
    return row


def rtl_emoji_row() -> dict:
    row = make_row(locale="he", display_name="נועה 🎧")
    row["top_artists"][0]["name"] = "עומר אדם"
    row["top_artists"][1]["name"] = "فيروز"
    row["top_artists"][2]["name"] = "🔥 Fire 🔥"
    row["top_tracks"][0]["name"], row["top_tracks"][0]["artists"] = "שיר אהבה", "עומר אדם"
    row["top_tracks"][1]["name"], row["top_tracks"][1]["artists"] = "كيفك إنت", "فيروز"
    row["top_tracks"][2]["name"] = "💃🕺 Dance 🎶"
    return row


CASES = {
    # name: (row, intro, dark mode)
    "full-week": (make_row, AI_INTRO, False),
    "first-week": (first_week_row, TEMPLATE_INTRO, False),
    "pending-metadata": (pending_metadata_row, TEMPLATE_INTRO, False),
    "long-names": (long_names_row, AI_INTRO, False),
    "rtl-emoji": (rtl_emoji_row, AI_INTRO, False),
    "dark-mode": (make_row, AI_INTRO, True),
}


def as_a_mail_client_shows_it(raw: bytes) -> str:
    """The HTML part with each cid: reference replaced by its part's bytes; fails on a missing or extra part."""
    message = message_from_bytes(raw, policy=policy.default)
    related = message.get_body(("related",))
    assert related is not None, "the HTML and its pictures travel as multipart/related"
    html = message.get_body(("html",)).get_content()
    parts = {
        re.sub(r"\s", "", part["Content-ID"]).strip("<>"): part
        for part in related.iter_parts()
        if part["Content-ID"]
    }
    referenced = set(re.findall(r'src="cid:([^"]+)"', html))
    assert referenced <= set(parts), f"pictures without a part: {referenced - set(parts)}"
    assert set(parts) <= referenced, f"parts nobody shows: {set(parts) - referenced}"
    for cid, part in parts.items():
        data = base64.b64encode(part.get_content()).decode("ascii")
        html = html.replace(f"cid:{cid}", f"data:{part.get_content_type()};base64,{data}")
    return html


def run_chromium(chromium, tmp_path, *args) -> str:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        "--disable-extensions", "--disable-background-networking", f"--user-data-dir={tmp_path / 'chromium'}", *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def look(chromium, tmp_path, page, width: int, dark: bool) -> dict:
    flags = ["--force-dark-mode"] if dark else []
    dom = run_chromium(chromium, tmp_path, *flags, f"--window-size={width},900", "--virtual-time-budget=10000",
                       "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="look-result"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    assert found, "the probe did not run: " + dom[-500:]
    return json.loads(html_lib.unescape(found.group(1)))


@pytest.mark.parametrize("case", list(CASES))
def test_recap_renders_whole_and_within_600_px(case, chromium, cover_server, tmp_path):
    make, intro, dark = CASES[case]
    facts = facts_from_row(with_covers(make(), cover_server))
    message = build_message(facts, intro, from_addr="wrapped@localhost", to_addr="ada@example.com")
    html = as_a_mail_client_shows_it(message.as_bytes())

    page = ARTIFACTS / f"{case}.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    found = look(chromium, tmp_path, page, LAYOUT_WIDTH, dark)

    assert found["dark"] is dark
    # light card, or the dark-mode rule survived CSS inlining
    assert found["card"] == ("rgb(24, 24, 24)" if dark else "rgb(255, 255, 255)")
    missing = [image for image in found["images"] if not image["loaded"]]
    assert not missing, f"pictures that did not load: {missing}"
    assert all(image["alt"] for image in found["images"]), "every picture has alt text"
    charts = [image for image in found["images"] if image["src"].startswith("data:image/png")]
    assert len(charts) == 3, found["images"]
    assert found["scrollWidth"] <= LAYOUT_WIDTH and found["widest"] <= LAYOUT_WIDTH + 0.5, found

    flags = ["--force-dark-mode"] if dark else []
    shot = ARTIFACTS / f"{case}.png"
    run_chromium(chromium, tmp_path, *flags, f"--window-size={LAYOUT_WIDTH},{min(found['height'], 6000)}",
                 "--virtual-time-budget=10000", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("case", ["long-names", "rtl-emoji"])
def test_recap_fits_a_narrow_window(case, chromium, cover_server, tmp_path):
    make, intro, dark = CASES[case]
    facts = facts_from_row(with_covers(make(), cover_server))
    message = build_message(facts, intro, from_addr="wrapped@localhost", to_addr="ada@example.com")
    page = ARTIFACTS / f"{case}-narrow.html"
    page.write_text(as_a_mail_client_shows_it(message.as_bytes()).replace("</body>", PROBE + "</body>"),
                    encoding="utf-8")
    found = look(chromium, tmp_path, page, NARROW_WIDTH, dark)
    assert found["scrollWidth"] <= NARROW_WIDTH and found["widest"] <= NARROW_WIDTH + 0.5, found


def test_a_missing_picture_part_is_caught():
    """The check itself can fail: a message whose HTML names a cid: without its part."""
    message = build_message(facts_from_row(make_row()), TEMPLATE_INTRO, from_addr="a@localhost", to_addr="b@localhost")
    related = message.get_body(("related",))
    related.set_payload(related.get_payload()[:-1])  # drop the last picture
    with pytest.raises(AssertionError, match="pictures without a part"):
        as_a_mail_client_shows_it(message.as_bytes())



def test_the_browser_check_sees_a_broken_picture_and_an_overflow(chromium, cover_server, tmp_path):
    """The Chromium probe itself can fail: a cover that does not load, a table wider than 600 px."""
    row = with_covers(make_row(), cover_server)
    row["top_tracks"][0]["image_url"] = "http://127.0.0.1:9/gone.png"  # nothing listens on port 9
    message = build_message(facts_from_row(row), TEMPLATE_INTRO, from_addr="a@localhost", to_addr="b@localhost")
    html = as_a_mail_client_shows_it(message.as_bytes())
    html = html.replace("</body>", '<table width="700" style="width: 700px;"><tr><td>wide</td></tr></table></body>')
    page = tmp_path / "broken.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    found = look(chromium, tmp_path, page, LAYOUT_WIDTH, dark=False)
    assert [image["src"] for image in found["images"] if not image["loaded"]] == ["http://127.0.0.1:9/gone.png"]
    assert found["widest"] > LAYOUT_WIDTH

def test_preview_writes_any_users_recap_without_sending(db, recap_db, tmp_path):
    """`render_preview` and `wrapped preview`: the stored week as one HTML file (pictures embedded)
    and its text part, in the user's locale; nothing sent, nothing recorded."""
    from types import SimpleNamespace

    from recap_helpers import insert_user, insert_week

    from weekly_wrapped.recap import store
    from weekly_wrapped.recap.charts import charts
    from weekly_wrapped.recap.preview import NoRecapRow, render_preview
    from wrapped_dev import cli

    insert_user(db, "recap-user-1", "ada@example.com")
    insert_week(db, make_row())
    with db.cursor() as cur:
        cur.execute("update app.users set locale = 'de' where user_id = 'recap-user-1'")

    out = render_preview(recap_db, "recap-user-1", "2026-11-19", tmp_path / "ada.html")  # a Thursday
    html, text = out.read_text(), out.with_suffix(".txt").read_text()
    assert "cid:" not in html
    stored = facts_from_row(store.week_row(db, "recap-user-1", date(2026, 11, 16)))
    assert html.count("data:image/png;base64,") == len(charts(stored))
    assert "This introduction was written from a template, not by AI." in html
    assert "- Minutes listened: 312.4" in text and "Freitag" in text and "Busiest hour: 21:00" in text
    with db.cursor() as cur:
        cur.execute("select count(*) from app.sent_emails")
        assert cur.fetchone()[0] == 0

    with pytest.raises(NoRecapRow):
        render_preview(recap_db, "recap-user-1", "2026-11-09", tmp_path / "none.html")
    settings = SimpleNamespace(warehouse_dsn=recap_db)
    assert cli.preview(settings, "recap-user-1", "2026-11-16", str(tmp_path / "cli.html")) == 0
    assert (tmp_path / "cli.html").read_text() == html
    assert cli.preview(settings, "nobody", "2026-11-16", str(tmp_path / "nobody.html")) == 1

