"""The listener's own page at /wrapped/me: the week so far, past recaps, the household.

Data (pure dataclasses, read from Postgres at the edge):
- `week_so_far`: this local week until now and last week until the same point, from the marts
  plus what arrived in raw.* since the last dbt build (docs/recap.md's rules).
- `history`: past recaps as the stored message bytes (HTML, cid: pictures by URL), the year view.
- `household`: the opt-in taste match.
Pictures: `svg` (inline SVG with <title> text alternatives, no JavaScript).
Web: `app` (the Starlette/FastAPI app mounted at /wrapped/me).
"""
