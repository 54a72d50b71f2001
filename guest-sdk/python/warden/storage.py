"""Sandboxed key-value storage: `self.storage` in a plugin.

The methods match Slack Machine's `PluginStorage`: each is a coroutine, to
be awaited from an `async def` handler::

    await self.storage.set("greeting", "hello", expires=3600)
    greeting = await self.storage.get("greeting")

Keys are namespaced by the plugin's identity on the host: a plugin passes
bare keys and never sees another plugin's keys. With `shared=True` a call
addresses the shared keyspace instead, which the operator must have granted
to the plugin (otherwise the call raises `AccessDenied`).

Values are stored as JSON, so that Rust plugins and the operator's tools
read them too. What can be stored:

=====================  ==========================================
Python                 stored as
=====================  ==========================================
`str`                  a JSON string
`int`, `float`         a JSON number (`float` must be finite)
`bool`                 `true` / `false`
`None`                 `null` (reads back as `None`, like a missing key)
`list`, `tuple`        a JSON array (reads back as a `list`)
`dict` with str keys   a JSON object
`bytes`, `bytearray`   `{"$bytes": "<base64>"}` (reads back as `bytes`)
=====================  ==========================================

Anything else (sets, dates, objects...) raises `Encode`. A dict whose only
key is `"$bytes"` is reserved for bytes and raises `Encode` too.
"""

import base64
import binascii
import datetime
import json
import math

from . import _host

__all__ = [
    "PluginStorage",
    "StorageError",
    "AccessDenied",
    "InvalidKey",
    "TooLarge",
    "QuotaExceeded",
    "Backend",
    "InvalidValue",
    "Encode",
    "Decode",
    "encode_value",
    "decode_value",
]

BYTES_TAG = "$bytes"


class StorageError(Exception):
    """A storage call failed. `message` says why, for people and logs."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class AccessDenied(StorageError):
    """Shared access without a grant, or a write with a read-only grant."""


class InvalidKey(StorageError):
    """The key is empty, too long, or has characters that are not allowed."""


class TooLarge(StorageError):
    """The value is over the size limit."""


class QuotaExceeded(StorageError):
    """The plugin's namespace is over its byte quota."""


class Backend(StorageError):
    """The store itself failed; the message is meant for logs."""


class InvalidValue(StorageError):
    """The stored value does not fit the operation."""


class Encode(StorageError):
    """The value cannot be stored: its type has no JSON form here."""


class Decode(StorageError):
    """The stored value is not JSON (for example raw bytes written by a
    Rust plugin's `set_bytes`)."""


# The WIT `error` cases, by the name of componentize-py's class for each.
_ERRORS = {
    "Error_AccessDenied": AccessDenied,
    "Error_InvalidKey": InvalidKey,
    "Error_TooLarge": TooLarge,
    "Error_QuotaExceeded": QuotaExceeded,
    "Error_Backend": Backend,
    "Error_InvalidValue": InvalidValue,
}


def _call(function, *args):
    """Calls a host storage function, turning its WIT error into the
    matching exception."""
    try:
        return function(*args)
    except _host.Err as err:
        case = err.value
        cls = _ERRORS.get(type(case).__name__, StorageError)
        raise cls(getattr(case, "value", str(case))) from None


def _jsonable(value, path):
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Encode(f"{path}: {value!r} has no JSON form")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_TAG: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Encode(f"{path}: dict keys must be str, not {type(key).__name__}")
            out[key] = _jsonable(item, f"{path}[{key!r}]")
        if list(out) == [BYTES_TAG]:
            raise Encode(f"{path}: a dict whose only key is {BYTES_TAG!r} is reserved for bytes")
        return out
    raise Encode(
        f"{path}: cannot store a value of type {type(value).__name__} "
        "(str, int, float, bool, None, bytes, list, tuple and dict can be stored)"
    )


def encode_value(value):
    """The bytes `set` stores for `value`: compact UTF-8 JSON."""
    try:
        text = json.dumps(
            _jsonable(value, "value"),
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
        return text.encode("utf-8")
    except (UnicodeEncodeError, RecursionError) as e:
        raise Encode(f"value: {e}") from None


def _object_hook(obj):
    if list(obj) == [BYTES_TAG] and isinstance(obj[BYTES_TAG], str):
        try:
            return base64.b64decode(obj[BYTES_TAG], validate=True)
        except binascii.Error as e:
            raise Decode(f"invalid base64 under {BYTES_TAG!r}: {e}") from None
    return obj


def decode_value(raw):
    """The value `get` returns for the stored bytes `raw`."""
    try:
        return json.loads(bytes(raw).decode("utf-8"), object_hook=_object_hook)
    except (UnicodeDecodeError, ValueError) as e:
        raise Decode(f"the stored value is not JSON: {e}") from None


def _expiry(expires):
    """`expires` (seconds, or a `datetime.timedelta`) as whole seconds,
    rounded up."""
    if expires is None:
        return None
    if isinstance(expires, datetime.timedelta):
        seconds = -(-expires // datetime.timedelta(seconds=1))
    elif isinstance(expires, int) and not isinstance(expires, bool):
        seconds = expires
    else:
        raise TypeError(
            f"expires must be a number of seconds (int) or a datetime.timedelta, "
            f"not {type(expires).__name__}"
        )
    if seconds < 0:
        raise ValueError(f"expires must not be negative: {expires!r}")
    return seconds


def _key(key):
    if not isinstance(key, str):
        raise TypeError(f"storage keys are str, not {type(key).__name__}")
    return key


class PluginStorage:
    """The plugin's key-value storage (Slack Machine's `PluginStorage`)."""

    async def set(self, key, value, expires=None, shared=False):
        """Stores `value` under `key`, replacing any previous value and
        expiry. `expires`: seconds (an int) or a `datetime.timedelta`,
        rounded up to whole seconds, after which the key is gone; `None`
        keeps it until deleted."""
        data = encode_value(value)
        seconds = _expiry(expires)
        storage = _host.require(_host.storage, "storage")
        _call(storage.set, _key(key), data, seconds, bool(shared))

    async def get(self, key, shared=False):
        """The value stored under `key`, or `None` when there is none."""
        storage = _host.require(_host.storage, "storage")
        raw = _call(storage.get, _key(key), bool(shared))
        return None if raw is None else decode_value(raw)

    async def has(self, key, shared=False):
        """Whether a value is stored under `key`."""
        storage = _host.require(_host.storage, "storage")
        return bool(_call(storage.has, _key(key), bool(shared)))

    async def delete(self, key, shared=False):
        """Removes `key`. Removing a missing key is not an error."""
        storage = _host.require(_host.storage, "storage")
        _call(storage.delete, _key(key), bool(shared))

    async def get_storage_size(self):
        """The size of the whole store in bytes, as the backend reports it."""
        storage = _host.require(_host.storage, "storage")
        return _call(storage.storage_size)

    async def get_storage_size_human(self):
        """The same size formatted for people, e.g. `32.0 KiB`."""
        storage = _host.require(_host.storage, "storage")
        return _call(storage.storage_size_human)
