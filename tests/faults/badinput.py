"""Malformed records, by kind: generators driven by a random.Random (hypothesis' st.randoms() or a seeded one).

Each kind says which dead-letter reasons are right for it (the reason header starts with "<kind>:").
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from streamtrain.wire import MAX_VALUE_BYTES

Record = tuple[bytes | None, bytes | None]


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[random.Random, int], Record]
    reasons: frozenset[str]


def _row(rnd: random.Random, width: int) -> list[str]:
    return [f"{rnd.uniform(-3, 3):.5g}" for _ in range(width)]


def _label(rnd: random.Random) -> bytes:
    return rnd.choice([b"0", b"1"])


def _csv(parts: list[str]) -> bytes:
    return ",".join(parts).encode()


def _wrong_columns(rnd: random.Random, width: int) -> Record:
    n = rnd.choice([w for w in (1, width - 1, width + 1, width * 2) if w > 0 and w != width])
    return _label(rnd), _csv(_row(rnd, n))


def _non_numeric(rnd: random.Random, width: int) -> Record:
    row = _row(rnd, width)
    row[rnd.randrange(width)] = rnd.choice(["abc", "1.2.3", "--5", "0x1G", "one", "", " ", "1e", "NULL", "€"])
    return _label(rnd), _csv(row)


def _nan(rnd: random.Random, width: int) -> Record:
    row = _row(rnd, width)
    row[rnd.randrange(width)] = rnd.choice(["nan", "NaN", "-nan", "NAN"])
    return _label(rnd), _csv(row)


def _inf(rnd: random.Random, width: int) -> Record:
    row = _row(rnd, width)
    row[rnd.randrange(width)] = rnd.choice(["inf", "-inf", "+inf", "Infinity", "-Infinity", "1e39", "-3.5e38"])
    return _label(rnd), _csv(row)


def _empty(rnd: random.Random, width: int) -> Record:
    return _label(rnd), rnd.choice([b"", None])


def _missing_label(rnd: random.Random, width: int) -> Record:
    return rnd.choice([None, b""]), _csv(_row(rnd, width))


def _invalid_label(rnd: random.Random, width: int) -> Record:
    key = rnd.choice([b"2", b"-1", b"0.5", b"yes", b"true", b"\xff", b"1,0", b"nan", str(rnd.randint(2, 99)).encode()])
    return key, _csv(_row(rnd, width))


def _not_utf8(rnd: random.Random, width: int) -> Record:
    value = bytearray(_csv(_row(rnd, width)))
    value[rnd.randrange(len(value))] = rnd.choice([0xFF, 0xFE, 0xC0, 0x80])
    return _label(rnd), bytes(value)


def _oversized(rnd: random.Random, width: int) -> Record:
    row = _row(rnd, width)
    row[0] = "1." + "0" * (MAX_VALUE_BYTES + rnd.randint(1, 5000))  # one huge but valid-looking number
    return _label(rnd), _csv(row)


def _garbage(rnd: random.Random, width: int) -> Record:
    body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
    return _label(rnd), bytes([rnd.choice([0x00, 0xFF, 0x1B])]) + body  # a NUL, ESC or 0xFF: never a CSV row


def _line_endings(rnd: random.Random, width: int) -> Record:
    separator = rnd.choice(["\r\n", "\n", "\r", "\n\r"])
    return _label(rnd), (",".join(_row(rnd, width)) + separator + ",".join(_row(rnd, width))).encode()


def _header(rnd: random.Random, width: int) -> Record:
    names = rnd.choice([[f"f{i}" for i in range(width)], [f"feature_{i}" for i in range(width)],
                        ["label", *[f"x{i}" for i in range(width - 1)]]])
    return _label(rnd), _csv(names)


KINDS = [
    Kind("wrong-column-count", _wrong_columns, frozenset({"wrong-column-count"})),
    Kind("non-numeric", _non_numeric, frozenset({"non-numeric"})),
    Kind("nan", _nan, frozenset({"non-finite"})),
    Kind("inf", _inf, frozenset({"non-finite"})),
    Kind("empty-value", _empty, frozenset({"empty-value"})),
    Kind("missing-label", _missing_label, frozenset({"missing-label"})),
    Kind("invalid-label", _invalid_label, frozenset({"invalid-label"})),
    Kind("not-utf8", _not_utf8, frozenset({"not-utf8"})),
    Kind("oversized", _oversized, frozenset({"oversized"})),
    Kind("binary-garbage", _garbage,
         frozenset({"not-utf8", "non-numeric", "wrong-column-count", "multiple-rows", "non-finite"})),
    Kind("mixed-line-endings", _line_endings, frozenset({"multiple-rows"})),
    Kind("header-row", _header, frozenset({"non-numeric"})),
]
BY_NAME = {kind.name: kind for kind in KINDS}


def clean_rows(rnd: random.Random, n: int, width: int) -> list[tuple[bytes, bytes]]:
    """A learnable clean stream: label = a noisy linear function of the features (accuracy ~0.9)."""
    weights = [rnd.uniform(-1, 1) for _ in range(width)]
    rows = []
    for _ in range(n):
        x = [rnd.uniform(-2, 2) for _ in range(width)]
        y = sum(w * v for w, v in zip(weights, x, strict=True)) + rnd.uniform(-0.5, 0.5) > 0
        rows.append((b"1" if y else b"0", ",".join(f"{v:.6g}" for v in x).encode()))
    return rows
