"""The Spotify app's request budget, shared by every process that polls, through one Postgres row.

Spotify limits requests per app (a rolling 30 s window), not per user. A run's mapped batches
run side by side in separate processes, on one machine (LocalExecutor) or many (Celery,
Kubernetes), and start and finish at different times; a fixed share per batch would leave
the budget of a batch still starting, or already done, unused. So every request reserves the
next free slot of one budget (`app.request_budget`, a row per Spotify app): the slot is the
row's `next_at` (or now, when it lies in the past), and `next_at` moves 1/rate seconds on.
Whichever batches run at a moment share the whole rate between them, and together they
never go over it. Postgres' clock decides, so workers' clocks need not agree. Idle time
earns no credit (no bursts), which keeps within Spotify's window whatever the timing.

A 429 from Spotify moves the slot past its Retry-After (`pause`): every process waits.
Costs one short UPDATE per request (a few hundred a minute at Spotify's rates).
"""

from __future__ import annotations

import time

from weekly_wrapped import db

RESERVE_SQL = """
insert into app.request_budget as b (name, next_at)
values (%(name)s, clock_timestamp() + make_interval(secs => %(interval)s))
on conflict (name) do update
    set next_at = greatest(b.next_at, clock_timestamp()) + make_interval(secs => %(interval)s)
returning greatest(0, extract(epoch from b.next_at - clock_timestamp()) - %(interval)s)::float8
"""

PAUSE_SQL = """
insert into app.request_budget as b (name, next_at)
values (%(name)s, clock_timestamp() + make_interval(secs => %(seconds)s))
on conflict (name) do update
    set next_at = greatest(b.next_at, clock_timestamp() + make_interval(secs => %(seconds)s))
"""


class SharedRateLimiter:
    """`spotify.client.RateLimiter`'s interface over the shared budget: `acquire()` waits for a slot."""

    def __init__(self, dsn: str, name: str, per_second: float):
        self.name = name
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.db = db.SharedConnection(dsn)  # one UPDATE per request, from every thread

    def _execute(self, sql: str, params: dict) -> float | None:
        rows = self.db.query(sql, {"name": self.name, **params})
        return rows[0][0] if rows else None

    def acquire(self) -> None:
        if not self.interval:
            return
        wait = self._execute(RESERVE_SQL, {"interval": self.interval})
        if wait:
            time.sleep(wait)  # outside the lock: other threads reserve the slots after this one

    def pause(self, seconds: float) -> None:
        self._execute(PAUSE_SQL, {"seconds": float(seconds)})

    def close(self) -> None:
        self.db.close()
