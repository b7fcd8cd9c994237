"""The broker's own error classes. The servicer maps each to one gRPC status code."""

from __future__ import annotations


class ForgeError(Exception):
    """Base of every error the broker reports to a caller."""


class InvalidArgument(ForgeError):
    """A request field is malformed or out of range. ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(ForgeError):
    """No job has the given id."""


class FailedPrecondition(ForgeError):
    """The job exists but is not in a state that allows the operation (or the lease is stale)."""


class ResourceExhausted(ForgeError):
    """A limit was reached."""
