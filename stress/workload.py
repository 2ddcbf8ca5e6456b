"""A realistic mix of log entries: levels, message sizes and metadata shapes.

Entries are prepared before the run so that building them costs the measured loop
nothing but a dict merge; every entry then gets its unique (stream, seq) id.
"""

from __future__ import annotations

import random
import string
from typing import Any

LEVELS = (("debug", 10), ("info", 68), ("warn", 13), ("error", 8), ("fatal", 1))
#: (share in percent, smallest and largest message length in characters)
SIZES = ((62, 20, 90), (28, 100, 480), (8, 1_000, 3_500), (2, 6_000, 14_000))
_WORDS = (
    "request", "user", "order", "payment", "cache", "miss", "hit", "retry", "timeout", "db",
    "query", "took", "ms", "served", "queued", "job", "worker", "session", "token", "refreshed",
    "upstream", "responded", "with", "status", "invalid", "field", "for", "tenant", "shard",
)
_PATHS = ("/api/v1/orders", "/api/v1/users/me", "/health", "/api/v1/search", "/login")


def _message(rng: random.Random, length: int) -> str:
    if length > 900:  # long entries look like tracebacks
        lines = ["Traceback (most recent call last):"]
        while sum(map(len, lines)) < length:
            lines.append(f'  File "/srv/app/{rng.choice(_WORDS)}.py", line {rng.randint(1, 999)},'
                         f" in {rng.choice(_WORDS)}_{rng.choice(_WORDS)}")
        lines.append("ValueError: " + " ".join(rng.choices(_WORDS, k=6)))
        return "\n".join(lines)[:length]
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(_WORDS))
    words.append(str(rng.randint(0, 99_999)))
    return " ".join(words)[:length]


def _metadata(rng: random.Random) -> dict[str, Any]:
    shape = rng.random()
    request_id = "".join(rng.choices(string.hexdigits.lower(), k=16))
    if shape < 0.15:
        return {}
    if shape < 0.65:  # the common case: four flat keys
        return {"request_id": request_id, "user_id": str(rng.randint(1, 10**6)),
                "path": rng.choice(_PATHS), "duration_ms": round(rng.uniform(0.1, 900), 2)}
    if shape < 0.95:
        return {"request_id": request_id, "user_id": rng.randint(1, 10**6),
                "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "status": rng.choice((200, 201, 204, 400, 404, 500)),
                "http": {"method": rng.choice(("GET", "POST")), "path": rng.choice(_PATHS),
                         "bytes": rng.randint(0, 10**6)},
                "tags": rng.sample(_WORDS, 3), "cached": rng.random() < 0.5,
                "ratio": rng.random()}
    return {"request_id": request_id, "items": [rng.randint(0, 10**9) for _ in range(40)]}


def _size_class(pick: float) -> tuple[int, int]:
    """The length range of the size class that a number in 0..100 falls into."""
    for share, low, high in SIZES:
        if pick < share:
            return low, high
        pick -= share
    return SIZES[-1][1], SIZES[-1][2]


def make_pool(seed: int, size: int = 512) -> list[tuple[str, str, dict[str, Any]]]:
    """``size`` prepared (level, message, metadata) triples, chosen by weight."""
    rng = random.Random(seed)
    levels = [name for name, _ in LEVELS]
    level_weights = [weight for _, weight in LEVELS]
    pool = []
    for _ in range(size):
        low, high = _size_class(rng.uniform(0, 100))
        level = rng.choices(levels, level_weights)[0]
        pool.append((level, _message(rng, rng.randint(low, high)), _metadata(rng)))
    return pool
