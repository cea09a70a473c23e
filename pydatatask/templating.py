"""Render job scripts and pod manifests with jinja2.

Templates are rendered with :class:`jinja2.StrictUndefined` (a misspelt name is an
error, not an empty string) and without autoescaping. Values that are costly to
compute, such as a link's ``info`` for the job, are passed as :class:`Lazy` and computed
only when the template names them.

**Shell scripts are safe by default** (:func:`render`). Every value a script template
interpolates with ``{{ ... }}`` must be *shell-safe*: a non-empty string of ASCII
letters, digits and ``_ . / : = + , @ % -``, which a shell reads as one literal word.
Numbers and other values are checked by their ``str()``. Any other value (an id such
as ``a$(id)b``, a path with a space, an empty string, which would vanish from the
command line) makes rendering fail with :class:`UnsafeValueError`, naming the value, so
nothing reaches a shell. Two filters mark a value as the author's choice:

- ``| shquote`` quotes it as one shell word (``shlex.quote`` of its string form), so
  spaces, quotes, ``$(...)`` and backticks stay inert;
- ``| raw`` inserts it as it is, unchecked, on the author's word.

Only the value an expression finally outputs is checked; literal template text and
``{% if %}``/``{% for %}`` tests never are. A filter applied after ``shquote`` or
``raw`` (``{{ x | shquote | upper }}``) or a concatenation (``{{ x | shquote ~ y }}``)
produces a new, plain string, which is checked again:

.. code-block:: jinja

    cp {{ input | shquote }} "$HOME/work/"{{ job | shquote }}.txt
    echo {{ job }} {{ count + 1 }}     {# fine for ids like run-42 #}

**Pod manifests cannot be reshaped by values** (:func:`render_manifest`). The template
is parsed as YAML with each interpolated value standing in as an opaque token, and the
values are put into the parsed document afterwards, so no id or value can add keys or
change the manifest's structure: a value holding a newline and ``hostNetwork: true``,
or ``{evil: 1}``, stays one string. A scalar that is exactly one ``{{ ... }}`` takes
the value itself (a number stays a number, a list a list; a string is never read as
YAML); within a longer string the value's ``str()`` is spliced in. ``| raw`` inserts a
value into the YAML text before it is parsed, on the author's word. The shell rule does
not apply to manifests; scripts embedded in them still need ``| shquote``.

In both kinds of template, what a macro call outputs is a value like any other; insert
it as text with ``| raw``, since the values inside it were handled when the macro ran.
"""

from __future__ import annotations

import functools
import re
import secrets
import shlex
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydatatask.errors import ConfigurationError

if TYPE_CHECKING:  # imported when the first template is parsed: importing it is slow
    import jinja2
    import jinja2.nodes
    import jinja2.runtime

__all__ = [
    "Lazy",
    "UnsafeValueError",
    "environment",
    "raw",
    "referenced_names",
    "render",
    "render_manifest",
    "required_names",
    "shquote",
]

_SHELL_SAFE = re.compile(r"[A-Za-z0-9_./:=+,@%-]+")
_PLACEHOLDERS = "pydatatask.placeholders"  # not an identifier, so no template can name it
_FALLBACKS = frozenset({"default", "d", "defined", "undefined"})  # filters and tests
_SHOWN = 200  # characters of an unsafe value that its error shows


class UnsafeValueError(ConfigurationError):
    """A value that is not shell-safe was interpolated into a script without a filter."""

    def __init__(self, value: str) -> None:
        shown = repr(value) if len(value) <= _SHOWN else f"{value[:_SHOWN]!r}..."
        super().__init__(
            f"the value {shown} is not safe to insert into a shell script as it is; "
            "write {{ ... | shquote }} to quote it as one shell word, "
            "or {{ ... | raw }} to insert it unchecked"
        )
        self.value = value


class _ShellWord(str):
    """A value quoted by ``shquote``: inserted into scripts as it is."""


class _Raw(str):
    """A value passed through ``raw``: inserted as it is, unchecked."""


def shquote(value: object) -> str:
    """Quote ``str(value)`` as a single POSIX shell word."""
    return _ShellWord(shlex.quote(str(value)))


def raw(value: object) -> str:
    """Mark ``str(value)`` to be inserted into a template as it is, unchecked."""
    return _Raw(str(value))


def _shell_safe(value: object) -> str:
    """Let marked values through; return any other value's text if it is shell-safe.

    :raises UnsafeValueError: for a value that a shell would not read as one literal word.
    """
    if isinstance(value, _ShellWord | _Raw):
        return value
    text = str(value)
    if _SHELL_SAFE.fullmatch(text) is None:
        raise UnsafeValueError(text)
    return text


class Lazy:
    """A template value computed by ``await factory()`` only if the template uses it."""

    def __init__(self, factory: Callable[[], Awaitable[Any]]) -> None:
        self.factory = factory

    def __repr__(self) -> str:
        return f"<Lazy {getattr(self.factory, '__qualname__', self.factory)!r}>"


class _Placeholders:
    """The values of one manifest rendering, each standing in the YAML text as a token."""

    def __init__(self) -> None:
        self.prefix = f"pydatatask{secrets.token_hex(8)}v"
        self.pattern = re.compile(re.escape(self.prefix) + r"(\d+)x")
        self.values: list[Any] = []

    def token(self, value: object) -> str:
        """Keep ``value`` and return the token that stands for it (a plain YAML word)."""
        self.values.append(value)
        return f"{self.prefix}{len(self.values) - 1}x"

    def text(self, text: str) -> str:
        """Return ``text`` with the ``str()`` of each value in place of its token."""
        return self.pattern.sub(lambda match: str(self.values[int(match[1])]), text)

    def fill(self, node: Any) -> Any:
        """Return the parsed ``node`` with every token replaced by its value.

        :raises ConfigurationError: when values make two keys of one mapping equal.
        """
        if isinstance(node, str):
            whole = self.pattern.fullmatch(node)
            return _plain(self.values[int(whole[1])]) if whole else self.text(node)
        if isinstance(node, list):
            return [self.fill(item) for item in node]
        if not isinstance(node, dict):
            return node
        filled: dict[Any, Any] = {}
        for key, value in node.items():
            new_key = self.fill(key)
            if isinstance(new_key, list | dict):  # a key must be a scalar
                new_key = self.text(key)
            if new_key in filled:
                raise ConfigurationError(f"the manifest has the key {new_key!r} twice")
            filled[new_key] = self.fill(value)
        return filled


def _plain(value: Any) -> Any:
    """Return ``value`` as plain YAML data: scalars as they are, other objects as ``str()``."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    return str(value)


def _placeholder(context: jinja2.runtime.Context, value: object) -> str:
    if isinstance(value, _Raw):
        return value
    placeholders: _Placeholders = context[_PLACEHOLDERS]
    return placeholders.token(value)


def _new_environment(finalize: Callable[..., str]) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        enable_async=True,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    env.filters["shquote"] = shquote
    env.filters["raw"] = raw
    return env


@functools.cache
def environment() -> jinja2.Environment:
    """Return the jinja2 environment of shell scripts: strict, shell-safe, with filters.

    It is not autoescaped, renders asynchronously, and has ``shquote`` and ``raw``.
    """
    return _new_environment(_shell_safe)


@functools.cache
def _manifest_environment() -> jinja2.Environment:
    import jinja2

    return _new_environment(jinja2.pass_context(_placeholder))


def _parse(template: str) -> jinja2.nodes.Template:
    import jinja2

    try:
        return environment().parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigurationError(f"template syntax error on line {exc.lineno}: {exc}") from exc


@functools.lru_cache(maxsize=256)
def referenced_names(template: str) -> frozenset[str]:
    """Return the top-level names ``template`` reads.

    :raises ConfigurationError: when the template does not parse.
    """
    import jinja2.meta

    return frozenset(jinja2.meta.find_undeclared_variables(_parse(template)))


@functools.lru_cache(maxsize=256)
def required_names(template: str) -> frozenset[str]:
    """Return the top-level names ``template`` reads that must be given.

    A name the template reads with ``name | default(...)`` or tests with ``name is
    defined`` somewhere may be missing, so it is left out.

    :raises ConfigurationError: when the template does not parse.
    """
    import jinja2.nodes

    optional = {
        node.node.name
        for node in _parse(template).find_all((jinja2.nodes.Filter, jinja2.nodes.Test))
        if node.name in _FALLBACKS and isinstance(node.node, jinja2.nodes.Name)
    }
    return referenced_names(template) - optional


@functools.lru_cache(maxsize=256)
def _compile(source: str, manifest: bool) -> jinja2.Template:
    referenced_names(source)  # a syntax error is a ConfigurationError
    env = _manifest_environment() if manifest else environment()
    return env.from_string(source)


async def _values(names: frozenset[str], context: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``context`` with the :class:`Lazy` values in ``names`` computed, others left out."""
    values: dict[str, Any] = {}
    for name, value in context.items():
        if isinstance(value, Lazy):
            if name not in names:
                continue
            value = await value.factory()
        values[name] = value
    return values


async def render(template: str, context: Mapping[str, Any]) -> str:
    """Render the shell script ``template`` with ``context``, computing the :class:`Lazy` it uses.

    :raises ConfigurationError: when the template does not parse.
    :raises UnsafeValueError: when it interpolates a value that is not shell-safe
        without ``| shquote`` or ``| raw``.
    :raises jinja2.UndefinedError: when it uses a name that the context lacks.
    """
    values = await _values(referenced_names(template), context)
    return await _compile(template, False).render_async(values)


async def render_manifest(template: str, context: Mapping[str, Any]) -> Any:
    """Render the YAML document ``template`` with ``context`` and return it parsed.

    Interpolated values never change the document's structure; see the module
    documentation.

    :raises ConfigurationError: when the template does not parse, its text is not YAML,
        or values make two keys of one mapping equal.
    :raises jinja2.UndefinedError: when it uses a name that the context lacks.
    """
    import yaml

    placeholders = _Placeholders()
    values = await _values(referenced_names(template), context)
    values[_PLACEHOLDERS] = placeholders
    text = await _compile(template, True).render_async(values)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"the rendered manifest is not YAML: {exc}") from exc
    return placeholders.fill(document)
