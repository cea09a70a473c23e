"""Render job scripts and manifests with jinja2.

Templates are rendered with :class:`jinja2.StrictUndefined` (a misspelt name is an
error, not an empty string) and without autoescaping. Values that are costly to
compute, such as a link's ``info`` for the job, are passed as :class:`Lazy` and computed
only when the template names them.

Interpolating a value into a shell script must always go through the ``shquote``
filter, which quotes it as one shell word (``shlex.quote`` of its string form), so
spaces, quotes, ``$(...)`` and backticks in job ids or values stay inert:

.. code-block:: jinja

    cp {{ input | shquote }} "$HOME/work/"{{ job | shquote }}.txt
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jinja2
import jinja2.meta

__all__ = ["Lazy", "environment", "referenced_names", "render", "shquote"]


def shquote(value: object) -> str:
    """Quote ``str(value)`` as a single POSIX shell word."""
    return shlex.quote(str(value))


class Lazy:
    """A template value computed by ``await factory()`` only if the template uses it."""

    def __init__(self, factory: Callable[[], Awaitable[Any]]) -> None:
        self.factory = factory

    def __repr__(self) -> str:
        return f"<Lazy {getattr(self.factory, '__qualname__', self.factory)!r}>"


@functools.cache
def environment() -> jinja2.Environment:
    """Return the shared jinja2 environment: strict, not autoescaped, async, with ``shquote``."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        enable_async=True,
        keep_trailing_newline=True,
    )
    env.filters["shquote"] = shquote
    return env


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> tuple[jinja2.Template, frozenset[str]]:
    env = environment()
    try:
        names = frozenset(jinja2.meta.find_undeclared_variables(env.parse(source)))
    except jinja2.TemplateSyntaxError as exc:
        from pydatatask.errors import ConfigurationError

        raise ConfigurationError(f"template syntax error on line {exc.lineno}: {exc}") from exc
    return env.from_string(source), names


def referenced_names(template: str) -> frozenset[str]:
    """Return the top-level names ``template`` reads.

    :raises ConfigurationError: when the template does not parse.
    """
    return _compile(template)[1]


async def render(template: str, context: Mapping[str, Any]) -> str:
    """Render ``template`` with ``context``, computing :class:`Lazy` values it names.

    :raises ConfigurationError: when the template does not parse.
    :raises jinja2.UndefinedError: when it uses a name that the context lacks.
    """
    compiled, names = _compile(template)
    values: dict[str, Any] = {}
    for name, value in context.items():
        if isinstance(value, Lazy):
            if name not in names:
                continue
            value = await value.factory()
        values[name] = value
    return await compiled.render_async(values)
