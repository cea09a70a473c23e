"""The one error a pipeline file reports: where it is, which key, and what is wrong."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydatatask.errors import ConfigurationError

__all__ = ["ConfigFileError", "nearest"]


class ConfigFileError(ConfigurationError):
    """A pipeline file is wrong at one place; ``str()`` is one line for the user.

    The line reads ``FILE:LINE: KEY: problem``, with `` (did you mean 'NAME'?)`` after
    an unknown name that is close to a known one. ``KEY`` is the dotted path of the key
    in the file (``repositories.books.extension``); it is left out, with its colon, for
    a problem of the whole file (invalid YAML), and ``:LINE`` is left out when no line
    applies (a file that cannot be read).

    Values substituted from settings or the environment never appear in the message:
    the key names them instead.

    :param path: the file, as the caller named it.
    :param line: the line (counting from 1), or None.
    :param key: the dotted path of the key, or ``""``.
    :param problem: what is wrong, one sentence without a final full stop.
    :param suggestion: the nearest known name, for an unknown one.
    """

    def __init__(
        self,
        path: str,
        line: int | None,
        key: str,
        problem: str,
        suggestion: str | None = None,
    ) -> None:
        self.path = path
        """The file, as the caller named it."""
        self.line = line
        """The line of the problem, counting from 1, or None."""
        self.key = key
        """The dotted path of the key in the file, or ``""`` for the whole file."""
        self.problem = " ".join(problem.split())
        """What is wrong, on one line."""
        self.suggestion = suggestion
        """The nearest known name, when the problem is an unknown one."""
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        parts = [where, self.key, self.problem] if self.key else [where, self.problem]
        message = ": ".join(parts)
        if self.suggestion is not None:
            message += f" (did you mean {self.suggestion!r}?)"
        return message

    def __str__(self) -> str:
        return self._message()

    def __reduce__(
        self,
    ) -> tuple[type[ConfigFileError], tuple[str, int | None, str, str, str | None]]:
        return (type(self), (self.path, self.line, self.key, self.problem, self.suggestion))


def nearest(name: object, known: Iterable[str]) -> str | None:
    """Return the known name closest to ``name``, if one is close enough to suggest."""
    if not isinstance(name, str):
        return None
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None
