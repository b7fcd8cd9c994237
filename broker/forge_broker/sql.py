"""Named SQL statements, loaded once from ``queries.sql`` beside this module, and the row
factory that reads their results into the broker's rows."""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, LiteralString, TypeVar, cast

import psycopg
from psycopg.rows import AsyncRowFactory, RowMaker, no_result

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")

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


def rows_by_name(cls: type[D], **convert: Callable[[Any], Any]) -> AsyncRowFactory[D]:
    """A row factory making each row a ``cls`` (a dataclass), every field from the column of
    its name whatever the statement's column order, through ``convert[field]`` when given.

    Columns are matched to fields once per result, not per row: with the columns in field order
    and nothing to convert, a row costs one positional call, a quarter of building it from
    keywords, and a claim reads a thousand rows at a time."""
    fields = [f.name for f in dataclasses.fields(cls)]
    converters = [(i, fn) for i, f in enumerate(fields) if (fn := convert.get(f)) is not None]

    def factory(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[D]:
        if cursor.description is None:
            return no_result
        names = [c.name for c in cursor.description]
        missing = [f for f in fields if f not in names]
        if missing:
            raise psycopg.ProgrammingError("the statement returns no column for "
                                           + ", ".join(f"{cls.__name__}.{f}" for f in missing))
        where = [names.index(f) for f in fields]
        if where == list(range(len(names))) and not converters:
            return lambda values: cls(*values)
        pick = operator.itemgetter(*where)

        def make(values: Sequence[Any]) -> D:
            args = list(pick(values))
            for i, fn in converters:
                args[i] = fn(args[i])
            return cls(*args)

        return make

    return factory
