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
`dict` with str keys   a JSON object (reads back as a `Record`)
`bytes`, `bytearray`   `{"$bytes": "<base64>"}` (reads back as `bytes`)
=====================  ==========================================

A JSON object reads back as a `Record`: a `dict` whose keys can also be
read as attributes (`manual.human` for `manual["human"]`), so that values
Slack Machine plugins stored as small objects, such as the help manual,
read as they did.

Anything else (sets, dates, objects...) raises `Encode`. A dict whose only
key is `"$bytes"` is reserved for bytes and raises `Encode` too.
`set_bytes` and `get_bytes` store and read bytes unchanged instead.

Beyond Slack Machine's methods, the storage lists keys a page at a time
(`list_keys`, `keys`), keeps atomic counters (`increment`), replaces values
atomically (`compare_and_swap`), reads and writes batches (`get_many`,
`set_many`, `delete_many`) and reports the bytes the plugin's namespace
holds (`get_namespace_size`)::

    visits = await self.storage.increment(f"visits:{msg.user}")
    page = await self.storage.list_keys("visits:", limit=100)
    counts = await self.storage.get_many(page.keys)
"""

import base64
import binascii
import datetime
import json
import math
from typing import NamedTuple, Optional

from . import _host

__all__ = [
    "PluginStorage",
    "KeyPage",
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

# The host returns at most this many keys a page; `keys` asks for full pages.
_PAGE = 1000

# `increment` counts in signed 64-bit integers, as the host does.
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


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
    """The value, the batch, or what the call would return is over its
    size limit."""


class QuotaExceeded(StorageError):
    """The plugin's namespace is over its byte quota."""


class Backend(StorageError):
    """The store itself failed; the message is meant for logs."""


class InvalidValue(StorageError):
    """The stored value does not fit the operation: `increment` on a value
    that is not a counter, or a counter that would overflow."""


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


class Record(dict):
    """A JSON object read from storage: a `dict` whose keys are also its
    attributes, so `record.name` reads `record["name"]`."""

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _object_hook(obj):
    if list(obj) == [BYTES_TAG] and isinstance(obj[BYTES_TAG], str):
        try:
            return base64.b64decode(obj[BYTES_TAG], validate=True)
        except binascii.Error as e:
            raise Decode(f"invalid base64 under {BYTES_TAG!r}: {e}") from None
    return Record(obj)


def decode_value(raw):
    """The value `get` returns for the stored bytes `raw`."""
    try:
        return json.loads(bytes(raw).decode("utf-8"), object_hook=_object_hook)
    except (UnicodeDecodeError, ValueError) as e:
        raise Decode(f"the stored value is not JSON: {e}") from None


def _expiry(expires):
    """`expires` (seconds, an `int` or a `float`, or a
    `datetime.timedelta`) as whole seconds, rounded up: `expires=0.5` keeps
    the key for one second, as Slack Machine's Redis backend does."""
    if expires is None:
        return None
    if isinstance(expires, datetime.timedelta):
        seconds = -(-expires // datetime.timedelta(seconds=1))
    elif isinstance(expires, int) and not isinstance(expires, bool):
        seconds = expires
    elif isinstance(expires, float):
        if expires != expires or expires in (float("inf"), float("-inf")):
            raise ValueError(f"expires must be a finite number of seconds: {expires!r}")
        if expires < 0:
            raise ValueError(f"expires must not be negative: {expires!r}")
        seconds = math.ceil(expires)
    else:
        raise TypeError(
            f"expires must be a number of seconds (int or float) or a datetime.timedelta, "
            f"not {type(expires).__name__}"
        )
    if seconds < 0:
        raise ValueError(f"expires must not be negative: {expires!r}")
    return seconds


def _key(key):
    if not isinstance(key, str):
        raise TypeError(f"storage keys are str, not {type(key).__name__}")
    return key


def _keys(keys):
    """`keys` (any iterable of str, but not one str) as a list."""
    if isinstance(keys, (str, bytes)):
        raise TypeError("pass a list of keys, not a single key")
    return [_key(key) for key in keys]


def _entries(entries):
    """`entries` (a dict, or an iterable of `(key, value)` pairs) as a list
    of `(key, stored bytes)`."""
    items = entries.items() if isinstance(entries, dict) else entries
    encoded = []
    for entry in items:
        try:
            key, value = entry
        except (TypeError, ValueError):
            raise TypeError(f"set_many takes (key, value) pairs, not {entry!r}") from None
        encoded.append((_key(key), encode_value(value)))
    return encoded


def _bytes(value, what):
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


class KeyPage(NamedTuple):
    """One page of keys from `PluginStorage.list_keys`."""

    #: The keys, in bytewise order.
    keys: list
    #: Pass this as `cursor` for the next page; `None` on the last one.
    next: Optional[str]


class PluginStorage:
    """The plugin's key-value storage (Slack Machine's `PluginStorage`)."""

    async def set(self, key, value, expires=None, shared=False):
        """Stores `value` under `key`, replacing any previous value and
        expiry. `expires`: seconds (an int or a float) or a `datetime.timedelta`,
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

    async def get_namespace_size(self):
        """The bytes of keys and values the plugin's own namespace holds:
        what its quota counts."""
        storage = _host.require(_host.storage, "storage")
        return _call(storage.namespace_size)

    async def set_bytes(self, key, data, expires=None, shared=False):
        """Stores the bytes `data` under `key` unchanged, not as JSON, the
        way a Rust plugin's `set_bytes` does. `expires` as for `set`."""
        data = _bytes(data, "data")
        seconds = _expiry(expires)
        storage = _host.require(_host.storage, "storage")
        _call(storage.set, _key(key), data, seconds, bool(shared))

    async def get_bytes(self, key, shared=False):
        """The bytes stored under `key`, not decoded, or `None` when there
        are none."""
        storage = _host.require(_host.storage, "storage")
        raw = _call(storage.get, _key(key), bool(shared))
        return None if raw is None else bytes(raw)

    async def list_keys(self, prefix="", cursor=None, limit=_PAGE, shared=False):
        """One `KeyPage` of the keys that start with `prefix`, in bytewise
        order, after `cursor` (the `next` of the previous page), at most
        `limit` (the host caps it at 1000). With `shared=True` the prefix
        must be covered by the plugin's read grant::

            cursor = None
            while True:
                page = await self.storage.list_keys("karma:", cursor, limit=100)
                for key in page.keys:
                    ...
                if page.next is None:
                    break
                cursor = page.next
        """
        if cursor is not None:
            cursor = _key(cursor)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if not 0 <= limit <= 2**32 - 1:
            raise ValueError(f"limit must be between 0 and 4294967295: {limit}")
        if not isinstance(prefix, str):
            raise TypeError(f"the prefix is a str, not {type(prefix).__name__}")
        storage = _host.require(_host.storage, "storage")
        page = _call(storage.list_keys, prefix, cursor, limit, bool(shared))
        return KeyPage(list(page.keys), page.next)

    async def keys(self, prefix="", shared=False):
        """Every key that starts with `prefix`, in bytewise order, fetched a
        page at a time."""
        keys = []
        cursor = None
        while True:
            page = await self.list_keys(prefix, cursor, _PAGE, shared)
            keys.extend(page.keys)
            if page.next is None:
                return keys
            cursor = page.next

    async def increment(self, key, delta=1, shared=False):
        """Atomically adds `delta` to the counter under `key` (created at
        `delta` if missing; its expiry is kept) and returns the new value.
        Counters are signed 64-bit integers stored as decimal digits, so
        `get` reads them as an `int`. Raises `InvalidValue` if the key holds
        something else or the sum would overflow."""
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, not {type(delta).__name__}")
        if not _I64_MIN <= delta <= _I64_MAX:
            raise ValueError(f"delta must fit in a signed 64-bit integer: {delta}")
        storage = _host.require(_host.storage, "storage")
        return _call(storage.increment, _key(key), delta, bool(shared))

    async def compare_and_swap(self, key, expected, new, shared=False):
        """Atomically replaces the value under `key` with `new` (`None`:
        deletes it) if the value there now is `expected` (`None`: the key
        is missing); returns whether it did. Values are compared as stored
        JSON, so use it on values this SDK (or a Rust plugin's `set`)
        wrote. The new value has no expiry::

            # Claim a job unless someone else has.
            mine = await self.storage.compare_and_swap("job:42", None, "worker-a")
        """
        expected = None if expected is None else encode_value(expected)
        new = None if new is None else encode_value(new)
        return await self.compare_and_swap_bytes(key, expected, new, shared)

    async def compare_and_swap_bytes(self, key, expected, new, shared=False):
        """`compare_and_swap` on bytes stored unchanged (`set_bytes`)."""
        expected = _bytes(expected, "expected")
        new = _bytes(new, "new")
        storage = _host.require(_host.storage, "storage")
        return bool(_call(storage.compare_and_swap, _key(key), expected, new, bool(shared)))

    async def get_many(self, keys, shared=False):
        """The values under `keys` (at most 1000), in the same order, with
        `None` for a key that holds none."""
        keys = _keys(keys)
        storage = _host.require(_host.storage, "storage")
        values = _call(storage.get_many, keys, bool(shared))
        return [None if raw is None else decode_value(raw) for raw in values]

    async def set_many(self, entries, expires=None, shared=False):
        """Stores every entry (a dict, or `(key, value)` pairs; at most
        1000) as `set` would, all or none, with one `expires` for all. A
        key given twice takes its last value."""
        encoded = _entries(entries)
        seconds = _expiry(expires)
        storage = _host.require(_host.storage, "storage")
        _call(storage.set_many, encoded, seconds, bool(shared))

    async def delete_many(self, keys, shared=False):
        """Removes every key (at most 1000), all or none; missing keys are
        fine."""
        keys = _keys(keys)
        storage = _host.require(_host.storage, "storage")
        _call(storage.delete_many, keys, bool(shared))
