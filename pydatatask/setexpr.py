"""Set expressions over named id sets: ``a.x - b.y``, ``(a.x | b.y) & c.z``.

A small tokenizer and a recursive-descent parser; nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

from pydatatask.errors import InputError

__all__ = ["OPERATIONS", "evaluate", "names", "tokenize"]


_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][\w-]*(?:\.[A-Za-z_]\w*)?)|(?P<op>[-&|^()]))", re.A)
# Python's precedence, loosest first: |, ^, &, then - (binary minus binds tighter).
_LEVELS = ("|", "^", "&", "-")
OPERATIONS: dict[str, Callable[[set[str], set[str]], set[str]]] = {
    "|": operator.or_,
    "^": operator.xor,
    "&": operator.and_,
    "-": operator.sub,
}


def tokenize(expr: str) -> list[tuple[str, int]]:
    """Split ``expr`` into ``(text, column)`` tokens."""
    tokens: list[tuple[str, int]] = []
    position = 0
    while expr[position:].strip():
        match = _TOKEN.match(expr, position)
        if match is None:
            column = len(expr) - len(expr[position:].lstrip()) + 1
            raise InputError(
                f"invalid expression {expr!r}: unexpected character at column {column}"
            )
        kind = "name" if match.group("name") else "op"
        tokens.append((match.group(kind), match.start(kind) + 1))
        position = match.end()
    return tokens


def evaluate(expr: str, tokens: list[tuple[str, int]], values: dict[str, set[str]]) -> set[str]:
    """Evaluate tokens by recursive descent; ``values`` maps each name to its ids."""
    position = 0

    def fail(message: str) -> InputError:
        where = "at the end"
        if position < len(tokens):
            where = f"at {tokens[position][0]!r} (column {tokens[position][1]})"
        return InputError(f"invalid expression {expr!r}: {message} {where}")

    def peek() -> str | None:
        return tokens[position][0] if position < len(tokens) else None

    def level(depth: int) -> set[str]:
        nonlocal position
        if depth == len(_LEVELS):
            return atom()
        value = level(depth + 1)
        while (symbol := peek()) == _LEVELS[depth]:
            position += 1
            value = OPERATIONS[symbol](value, level(depth + 1))
        return value

    def atom() -> set[str]:
        nonlocal position
        token = peek()
        if token is None or (token not in values and token != "("):
            raise fail("expected TASK.LINK or '('")
        position += 1
        if token in values:
            return set(values[token])
        value = level(0)
        if peek() != ")":
            raise fail("expected ')'")
        position += 1
        return value

    result = level(0)
    if position < len(tokens):
        raise fail("expected an operator")
    return result


def names(tokens: list[tuple[str, int]]) -> list[str]:
    """Return the operand names among ``tokens``, in order."""
    return [text for text, _ in tokens if text not in OPERATIONS and text not in "()"]
