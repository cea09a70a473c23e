"""Codecs: how a blob repository turns Python values into bytes and back.

A blob repository holds one :class:`Codec`, which its ``load(job)`` and ``save(job,
value)`` use. The built-in codecs, by name:

================ =========================================== ==========================
name             saves                                       loads
================ =========================================== ==========================
``"bytes"``      ``bytes``, ``bytearray``, ``memoryview``    ``bytes``
``"text"``       ``str``, stored as UTF-8                    ``str``
``"json"``       what ``json.dumps`` takes (strict JSON)     dicts, lists, scalars
``"yaml"``       YAML's safe subset                          dicts, lists, scalars
``"pickle"``     any picklable object                        the object
``"csv"``        a table (see below)                         a ``pyarrow.Table``
``"parquet"``    a table (see below)                         a ``pyarrow.Table``
================ =========================================== ==========================

A table is a ``pyarrow.Table`` (or ``pyarrow.RecordBatch``), a pandas ``DataFrame`` or
a list of dicts (one dict per row). The ``csv`` and ``parquet`` codecs need pyarrow
(``pip install 'pydatatask[tables]'``), imported the first time one of them is used.

Only load pickled data that this pipeline wrote: unpickling runs code named in the data.
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from pydatatask import yamltext
from pydatatask._optional import import_optional
from pydatatask.errors import CodecError, ConfigurationError, PydatataskError

__all__ = [
    "BUILTIN_CODECS",
    "EXTENSION_CODECS",
    "Codec",
    "codec_for",
    "decode_value",
    "encode_value",
]

_BINARY = (bytes, bytearray, memoryview)


@dataclass(frozen=True)
class Codec:
    """A pair of functions that store a value as bytes and read it back.

    ``decode(encode(value))`` should give back an equal value. Either function signals a
    value or data it cannot handle by raising an exception (``TypeError``,
    ``ValueError``, ...), which ``save`` and ``load`` report as a
    :class:`~pydatatask.errors.CodecError` naming the job and the codec.

    :param encode: turns a value into ``bytes``.
    :param decode: turns ``bytes`` back into a value.
    :param name: how errors and ``repr`` name this codec.
    :raises ConfigurationError: when ``encode`` or ``decode`` is not callable.
    """

    encode: Callable[[Any], bytes] = field(repr=False)
    decode: Callable[[bytes], Any] = field(repr=False)
    name: str = "custom"

    def __post_init__(self) -> None:
        for role in ("encode", "decode"):
            if not callable(getattr(self, role)):
                raise ConfigurationError(f"Codec {role} must be callable")


def _type_name(value: object) -> str:
    return type(value).__name__


def _encode_bytes(value: Any) -> bytes:
    if isinstance(value, _BINARY):
        return bytes(value)
    raise TypeError(f"it stores bytes, bytearray or memoryview, not {_type_name(value)}")


def _decode_bytes(data: bytes) -> bytes:
    return data


def _encode_text(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"it stores str, not {_type_name(value)}")


def _decode_text(data: bytes) -> str:
    return data.decode("utf-8")


def _encode_json(value: Any) -> bytes:
    # allow_nan=False: NaN and infinities are not JSON, and other readers reject them.
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _decode_json(data: bytes) -> Any:
    return json.loads(data)


def _encode_yaml(value: Any) -> bytes:
    return yamltext.dump(value).encode("utf-8")


def _decode_yaml(data: bytes) -> Any:
    return yamltext.load(data)


def _encode_pickle(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _decode_pickle(data: bytes) -> Any:
    # Documented: load pickled data only from a repository the pipeline wrote.
    return pickle.loads(data)


def _pyarrow(submodule: str = "") -> ModuleType:
    """Import pyarrow (or one of its submodules) on first use of a table codec."""
    pyarrow = import_optional("pyarrow", "tables")
    return import_optional(f"pyarrow{submodule}", "tables") if submodule else pyarrow


def _to_table(value: Any) -> Any:
    """Return ``value`` as a ``pyarrow.Table``.

    :raises TypeError: for a value that is not a table, a data frame or a list of dicts.
    """
    pyarrow = _pyarrow()
    if isinstance(value, pyarrow.Table):
        return value
    if isinstance(value, pyarrow.RecordBatch):
        return pyarrow.Table.from_batches([value])
    # A DataFrame can only exist when pandas was imported, so never import it here.
    # pandas may be half imported by another thread (pyarrow imports it): then no value
    # can be one of its DataFrames yet.
    frame = getattr(sys.modules.get("pandas"), "DataFrame", None)
    if isinstance(frame, type) and isinstance(value, frame):
        return pyarrow.Table.from_pandas(value)
    if isinstance(value, list | tuple):
        for index, row in enumerate(value):
            if not isinstance(row, Mapping):
                raise TypeError(f"row {index} of the list is a {_type_name(row)}, not a dict")
        return pyarrow.Table.from_pylist([dict(row) for row in value])
    raise TypeError(
        f"it stores a pyarrow.Table, a pandas DataFrame or a list of dicts, not {_type_name(value)}"
    )


def _buffer_bytes(write: Callable[[Any], None]) -> bytes:
    """Return what ``write(sink)`` writes to an in-memory pyarrow sink."""
    sink = _pyarrow().BufferOutputStream()
    write(sink)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _encode_csv(value: Any) -> bytes:
    table = _to_table(value)
    return _buffer_bytes(lambda sink: _pyarrow(".csv").write_csv(table, sink))


def _decode_csv(data: bytes) -> Any:
    pyarrow = _pyarrow()
    if not data:
        # A table without columns (an empty list of rows) is stored as an empty file.
        return pyarrow.table({})
    return _pyarrow(".csv").read_csv(pyarrow.BufferReader(data))


def _encode_parquet(value: Any) -> bytes:
    table = _to_table(value)
    return _buffer_bytes(lambda sink: _pyarrow(".parquet").write_table(table, sink))


def _decode_parquet(data: bytes) -> Any:
    return _pyarrow(".parquet").read_table(_pyarrow().BufferReader(data))


BUILTIN_CODECS: Mapping[str, Codec] = MappingProxyType(
    {
        codec.name: codec
        for codec in (
            Codec(_encode_bytes, _decode_bytes, "bytes"),
            Codec(_encode_text, _decode_text, "text"),
            Codec(_encode_json, _decode_json, "json"),
            Codec(_encode_yaml, _decode_yaml, "yaml"),
            Codec(_encode_pickle, _decode_pickle, "pickle"),
            Codec(_encode_csv, _decode_csv, "csv"),
            Codec(_encode_parquet, _decode_parquet, "parquet"),
        )
    }
)
"""The built-in codecs by name."""

EXTENSION_CODECS: Mapping[str, str] = MappingProxyType(
    {
        ".txt": "text",
        ".json": "json",
        ".yaml": "yaml",
        ".yml": "yaml",
        ".pkl": "pickle",
        ".pickle": "pickle",
        ".csv": "csv",
        ".parquet": "parquet",
    }
)
"""The codec a file extension (or key suffix) implies, when no codec is given."""


def codec_for(codec: str | Codec | None, extension: str = "") -> Codec:
    """Return the codec a repository's ``codec=`` argument names.

    A :class:`Codec` is returned as it is and a name picks a built-in codec. None picks
    by the last dotted part of ``extension``, in any case (:data:`EXTENSION_CODECS`:
    ``".json"``, ``".csv"``, ...), and the ``"bytes"`` codec for any other extension.

    :raises ConfigurationError: for an unknown name or a value of another type.
    """
    if isinstance(codec, Codec):
        return codec
    if codec is None:
        _, dot, last = extension.rpartition(".")
        name = EXTENSION_CODECS.get(f".{last.lower()}", "bytes") if dot else "bytes"
        return BUILTIN_CODECS[name]
    if isinstance(codec, str):
        try:
            return BUILTIN_CODECS[codec]
        except KeyError:
            known = ", ".join(repr(name) for name in BUILTIN_CODECS)
            raise ConfigurationError(
                f"unknown codec {codec!r}: use one of {known}, or a Codec(encode, decode)"
            ) from None
    raise ConfigurationError(f"codec must be a codec name or a Codec, not {_type_name(codec)}")


def encode_value(codec: Codec, value: Any, job: str, repository: object) -> bytes:
    """Return ``value`` encoded with ``codec`` as the value of ``job`` in ``repository``.

    Errors of pydatatask itself (a :class:`~pydatatask.errors.MissingDependencyError`
    for a missing optional package) pass through unchanged.

    :raises CodecError: when the codec cannot encode ``value``, or returns no bytes.
    """
    try:
        data = codec.encode(value)
    except PydatataskError:
        raise
    except Exception as exc:  # the codec may be user code, raising anything
        raise CodecError(
            f"{repository!r}: cannot save the {_type_name(value)} value of job {job!r} "
            f"with the {codec.name!r} codec: {exc}",
            job,
            codec.name,
        ) from exc
    if not isinstance(data, _BINARY):
        raise CodecError(
            f"{repository!r}: cannot save the value of job {job!r}: the {codec.name!r} "
            f"codec's encode returned {_type_name(data)}, not bytes",
            job,
            codec.name,
        )
    return bytes(data)


def decode_value(codec: Codec, data: bytes, job: str, repository: object) -> Any:
    """Return ``data``, the stored value of ``job`` in ``repository``, decoded with ``codec``.

    Errors of pydatatask itself pass through unchanged, as for :func:`encode_value`.

    :raises CodecError: when the codec cannot decode ``data``.
    """
    try:
        return codec.decode(data)
    except PydatataskError:
        raise
    except Exception as exc:  # the codec may be user code, raising anything
        raise CodecError(
            f"{repository!r}: cannot load the value of job {job!r} with the {codec.name!r} "
            f"codec ({len(data)} bytes stored): {exc}",
            job,
            codec.name,
        ) from exc
