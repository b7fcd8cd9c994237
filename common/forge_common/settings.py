"""Reading the services' settings from environment variables and flags, one way everywhere.

Each parser takes the setting's name (``FORGE_POOL_MAX``, ``--port``) and its raw text, and
either returns the value or raises SettingError naming that setting, so an operator always
learns which variable or flag to fix. A service turns SettingError into its own error type at
its edge: the broker's InvalidArgument, workerd's ConfigError, argparse's exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
N = TypeVar("N", int, float)
Parse = Callable[[str, str], T]
"""A parser: ``(name, raw) -> value``, raising SettingError that names ``name``."""


class SettingError(ValueError):
    """A setting's value is unusable; ``name`` is the variable or flag, ``problem`` says why."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def _within(name: str, value: N, low: N | None, high: N | None) -> N:
    if low is not None and high is not None and not low <= value <= high:
        raise SettingError(name, f"must be in [{low}, {high}], got {value}")
    if low is not None and value < low:
        raise SettingError(name, f"must be at least {low}, got {value}")
    if high is not None and value > high:
        raise SettingError(name, f"must be at most {high}, got {value}")
    return value


def integer(name: str, raw: str, low: int | None = None, high: int | None = None) -> int:
    """A whole number, within ``[low, high]`` where they are given."""
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(name, f"not an integer: {raw!r}") from None
    return _within(name, value, low, high)


def number(name: str, raw: str, low: float | None = None, high: float | None = None) -> float:
    """A finite number, within ``[low, high]`` where they are given."""
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(name, f"not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise SettingError(name, f"must be finite, got {raw!r}")
    return _within(name, value, low, high)


def positive_number(name: str, raw: str) -> float:
    """A finite number above zero: a duration or an interval."""
    value = number(name, raw)
    if value <= 0:
        raise SettingError(name, f"must be positive, got {raw!r}")
    return value


def port(name: str, raw: str) -> int:
    """A TCP port number; 0 where the setting allows "none" or "any"."""
    return integer(name, raw, 0, 65535)


def existing_file(name: str, raw: str) -> Path:
    """A path that names a file now, so a typo fails at start rather than at first use."""
    path = Path(raw)
    if not path.is_file():
        raise SettingError(name, f"no such file: {raw}")
    return path


def text(name: str, raw: str) -> str:
    """Any text, as given."""
    return raw


def from_env(env: Mapping[str, str], var: str, default: T, parse: Parse[T]) -> T:
    """``parse(var, value)`` of the variable; ``default`` when it is unset or blank."""
    raw = (env.get(var) or "").strip()
    return parse(var, raw) if raw else default


class Option(NamedTuple):
    """A flag with an environment variable behind it (the flag wins), a default and a parser."""

    flag: str
    var: str
    default: Any
    help: str
    parse: Parse[Any] = text


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option],
                env: Mapping[str, str]) -> None:
    """Add each option to ``parser``, its default taken from ``env`` when set there.

    argparse parses a flag's text and also a default given as text, so a value from the
    environment is checked as one from the command line is; a bad one exits with status 2.
    """
    for opt in options:
        shown = "" if opt.default in (None, "") else ", default %(default)s"
        parser.add_argument(opt.flag, type=argparse_type(opt.flag, opt.parse),
                            default=from_env(env, opt.var, opt.default, text),
                            help=f"{opt.help} [{opt.var}{shown}]")


def argparse_type(flag: str, parse: Parse[T]) -> Callable[[str], T]:
    """``parse`` as an argparse ``type=``: a bad value exits with status 2 naming ``flag``."""
    def convert(raw: str) -> T:
        try:
            return parse(flag, raw)
        except SettingError as exc:  # argparse's message already names the flag
            raise argparse.ArgumentTypeError(exc.problem) from None

    return convert
