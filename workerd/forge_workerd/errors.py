"""The errors workerd raises, and the two a handler raises to choose its job's fate."""

from __future__ import annotations


class Retry(Exception):
    """Raised by a handler: this attempt failed, run the job again after ``after`` seconds.

    ``after=None`` leaves the delay to the broker's exponential backoff. The attempt still counts
    toward the job's max_retries.
    """

    def __init__(self, message: str = "retry requested", *, after: float | None = None) -> None:
        if after is not None and after < 0:
            raise ValueError(f"Retry(after=...) must not be negative, got {after}")
        super().__init__(message)
        self.message = message
        self.after = after


class Fail(Exception):
    """Raised by a handler: this job can never succeed; send it straight to the dead-letter queue."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WorkerdError(Exception):
    """Base of workerd's own errors."""


class ConfigError(WorkerdError):
    """A command-line option or environment variable is invalid; the message names it."""


class HandlerError(WorkerdError):
    """A handler cannot be registered or loaded (bad name, duplicate, import failure)."""


class BrokerRejected(WorkerdError):
    """The broker refused the Lease request itself (e.g. INVALID_ARGUMENT): retrying cannot help."""
