"""What several test areas (and the benchmarks) share, in one place.

- `postgres`  a throwaway database of a test's own on a shared server (`private_database`)
- `kafka`     topics of a test's own on a shared broker (`private_topics`)
- `ports`     a free local TCP port (`free_port`)
- `messages`  valid messages of the four streams (`play`, `track`, `album`, `artist`)
- `unique`    a name no other test uses

Importable as `tests.support` (tests/conftest.py puts the repository root on sys.path;
a benchmark does the same).
"""

import uuid


def unique(prefix: str) -> str:
    """`prefix` with a random suffix: a name (user, database, topic) no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"
