"""Named SQL statements, loaded once from ``queries.sql`` beside this module."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString, cast

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def queries() -> dict[str, LiteralString]:
    """Return every statement in ``queries.sql`` keyed by its ``-- name:`` header."""
    text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    named = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}
    return {name: cast(LiteralString, body) for name, body in named.items()}


def q(name: str) -> LiteralString:
    """The statement called ``name``; KeyError names a typo at first use."""
    return queries()[name]
