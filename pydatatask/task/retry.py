"""Retry policies: how many attempts a job gets and how long to wait between them."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydatatask.errors import ConfigurationError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a failed job with exponential backoff and jitter.

    :param max_attempts: attempts in all, the first one included (1 means no retry).
    :param backoff: seconds to wait after the first failure; doubled after each failure.
    :param max_backoff: the longest wait.
    :param jitter: the fraction of each wait that is random (0 for none, 1 for "full
        jitter"), so that many failing jobs do not retry in lockstep.
    :param retry_on: exception types worth retrying; others fail the job at once. A
        :class:`~pydatatask.ConfigurationError` (an unsafe template value, a wiring
        mistake) fails the same way every time and is never retried.
    :param retry_timeouts: whether a job that hit its timeout is retried.
    """

    max_attempts: int = 1
    backoff: float = 1.0
    max_backoff: float = 300.0
    jitter: float = 0.5
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_timeouts: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ConfigurationError("backoff and max_backoff must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be between 0 and 1, not {self.jitter}")

    @classmethod
    def coerce(cls, value: RetryPolicy | int | None) -> RetryPolicy:
        """Accept a policy, a number of attempts, or None (a single attempt)."""
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(max_attempts=value)
        raise ConfigurationError(f"retry must be a RetryPolicy or an int, not {value!r}")

    def should_retry(self, attempt: int, error: BaseException | None, timed_out: bool) -> bool:
        """Whether a job whose ``attempt``-th attempt failed gets another one."""
        if attempt >= self.max_attempts:
            return False
        if timed_out:
            return self.retry_timeouts
        if isinstance(error, ConfigurationError):
            return False  # a template or wiring mistake fails the same way every time
        return error is not None and isinstance(error, self.retry_on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th attempt failed."""
        base = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return base * (1 - self.jitter) + base * self.jitter * random.random()
