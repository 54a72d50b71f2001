"""Tests of the Python SDK on plain CPython, against an in-memory stand-in
for the host:

    python3 -m unittest discover -s guest-sdk/python/tests
"""

import asyncio
import contextlib
import datetime
import io
import os
import re
import sys
import types
import unittest
from dataclasses import dataclass
from enum import Enum

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import warden  # noqa: E402
from warden import _host  # noqa: E402
from warden.storage import decode_value, encode_value  # noqa: E402


class Err(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


@dataclass
class Error_AccessDenied:  # noqa: N801 - componentize-py's names
    value: str


@dataclass
class Error_QuotaExceeded:  # noqa: N801
    value: str


@dataclass
class Error_InvalidValue:  # noqa: N801
    value: str


@dataclass
class Error_TooLarge:  # noqa: N801
    value: str


@dataclass
class WitKeyPage:
    keys: list
    next: object


class FakeStorage:
    def __init__(self):
        self.data = {}
        self.calls = []

    def _check(self, key, shared):
        if shared:
            raise Err(Error_AccessDenied("no shared grant"))
        if key == "full":
            raise Err(Error_QuotaExceeded("quota of 10 bytes"))

    def set(self, key, value, expires, shared):
        self._check(key, shared)
        self.calls.append(("set", key, value, expires))
        self.data[key] = bytes(value)

    def get(self, key, shared):
        self._check(key, shared)
        return self.data.get(key)

    def has(self, key, shared):
        self._check(key, shared)
        return key in self.data

    def delete(self, key, shared):
        self._check(key, shared)
        self.data.pop(key, None)

    def storage_size(self):
        return 2048

    def storage_size_human(self):
        return "2.0 KiB"

    def namespace_size(self):
        return sum(len(k) + len(v) for k, v in self.data.items())

    def list_keys(self, prefix, cursor, limit, shared):
        self._check(prefix or "-", shared)
        self.calls.append(("list_keys", prefix, cursor, limit))
        limit = max(1, min(limit, 1000))
        keys = sorted(k for k in self.data if k.startswith(prefix) and (cursor is None or k > cursor))
        page = keys[:limit]
        return WitKeyPage(page, page[-1] if len(page) == limit else None)

    def increment(self, key, delta, shared):
        self._check(key, shared)
        raw = self.data.get(key, b"0")
        if not raw.lstrip(b"-").isdigit():
            raise Err(Error_InvalidValue("not a counter"))
        value = int(raw) + delta
        if not -(2**63) <= value < 2**63:
            raise Err(Error_InvalidValue("overflow"))
        self.data[key] = str(value).encode()
        return value

    def compare_and_swap(self, key, expected, new, shared):
        self._check(key, shared)
        self.calls.append(("compare_and_swap", key, expected, new))
        if self.data.get(key) != expected:
            return False
        if new is None:
            self.data.pop(key, None)
        else:
            self.data[key] = bytes(new)
        return True

    def get_many(self, keys, shared):
        for key in keys:
            self._check(key, shared)
        return [self.data.get(key) for key in keys]

    def set_many(self, entries, expires, shared):
        for key, _ in entries:
            self._check(key, shared)
        if len(entries) > 1000:
            raise Err(Error_TooLarge("too many keys"))
        self.calls.append(("set_many", entries, expires))
        for key, value in entries:
            self.data[key] = bytes(value)

    def delete_many(self, keys, shared):
        for key in keys:
            self._check(key, shared)
        for key in keys:
            self.data.pop(key, None)


class FakeChat:
    def __init__(self):
        self.said = []
        self.sent = []

    def say(self, text, thread=None):
        self.said.append(text)
        self.sent.append(("say", text, thread))

    def reply(self, text, in_thread):
        self.said.append(text)
        self.sent.append(("reply", text, in_thread))


class FakeStore:
    """`wasi:config/store`: the plugin's settings."""

    def __init__(self, settings):
        self.settings = dict(settings)

    def get(self, key):
        return self.settings.get(key)

    def get_all(self):
        return list(self.settings.items())


class RouteKind(Enum):
    RESPOND_TO = 0
    LISTEN_TO = 1


@dataclass
class Route:
    kind: RouteKind
    pattern: str
    ignore_case: bool
    handler: str
    doc: str


@dataclass
class Schedule:
    cron: str
    channel: object
    handler: str
    doc: str


@dataclass
class Manifest:
    id: str
    version: str
    description: str
    routes: list
    schedules: list
    required_settings: list


@dataclass
class Sender:
    id: str
    name: object = None


@dataclass
class WitMessage:
    text: str
    sender: Sender = None
    channel: str = "general"
    addressed: bool = True
    id: object = None
    thread: object = None

    def __post_init__(self):
        if self.sender is None:
            self.sender = Sender("alice")


@dataclass
class Capture:
    name: str
    value: object


FAKE_TYPES = types.SimpleNamespace(RouteKind=RouteKind, Route=Route, Manifest=Manifest, Schedule=Schedule)


def run(coroutine):
    return warden.run(coroutine)


def top_level(cls):
    """Gives a class defined in a test the identity of a top-level one."""
    cls.__qualname__ = cls.__name__
    return cls


class HostTest(unittest.TestCase):
    def setUp(self):
        self.storage = FakeStorage()
        self.chat = FakeChat()
        self.store = FakeStore({"greeting": "hi", "api_key": "s3cret"})
        _host.install(storage=self.storage, chat=self.chat, store=self.store, types=FAKE_TYPES, err=Err)


class Values(HostTest):
    def roundtrip(self, value):
        run(warden.Plugin.storage.set("k", value))
        return run(warden.Plugin.storage.get("k"))

    def test_basic_types_round_trip(self):
        for value in ["hello world", "", "héllo ✓", 0, -7, 2**70, 1.5, True, False, None,
                      [1, "two", [3.0]], {"a": {"b": [None, True]}}, b"\x00\xff", bytearray(b"ab"),
                      {"blob": b"\x01", "list": [b""]}]:
            expected = bytes(value) if isinstance(value, bytearray) else value
            self.assertEqual(self.roundtrip(value), expected, repr(value))

    def test_tuples_read_back_as_lists(self):
        self.assertEqual(self.roundtrip((1, (2, 3))), [1, [2, 3]])

    def test_strings_are_stored_as_rust_would(self):
        # serde_json's compact form: what a Rust plugin's typed get reads.
        self.assertEqual(encode_value("hello world"), b'"hello world"')
        self.assertEqual(encode_value('say "hi" \\ ✓\n'), '"say \\"hi\\" \\\\ ✓\\n"'.encode())
        self.assertEqual(encode_value({"a": [1, 2.5, None]}), b'{"a":[1,2.5,null]}')
        self.assertEqual(encode_value(b"\x00\xff"), b'{"$bytes":"AP8="}')

    def test_values_stored_by_rust_are_read(self):
        self.assertEqual(decode_value(b'"hello world"'), "hello world")
        self.assertEqual(decode_value(b"42"), 42)  # a counter from increment
        self.assertEqual(decode_value(b"[1,2,3]"), [1, 2, 3])

    def test_unsupported_values_raise_encode(self):
        for value in [{1, 2}, object(), datetime.date(2024, 1, 1), float("nan"), float("inf"),
                      {1: "int key"}, {"$bytes": "reserved"}, "\ud800"]:
            with self.assertRaises(warden.Encode, msg=repr(value)):
                encode_value(value)
        with self.assertRaises(warden.Encode):
            run(warden.Plugin.storage.set("k", {1, 2}))
        self.assertEqual(self.storage.data, {})

    def test_non_json_values_raise_decode(self):
        for raw in [b"\xff\x00", b"raw text", b'{"$bytes":"not base64!"}']:
            with self.assertRaises(warden.Decode, msg=repr(raw)):
                decode_value(raw)

    def test_expiry_in_seconds_or_timedelta(self):
        storage = warden.Plugin.storage
        run(storage.set("a", 1))
        run(storage.set("b", 1, expires=30))
        run(storage.set("c", 1, expires=datetime.timedelta(minutes=2)))
        run(storage.set("d", 1, expires=datetime.timedelta(seconds=1, microseconds=1)))
        run(storage.set("e", 1, expires=0))
        # Floats, as Slack Machine's backends take them, rounded up.
        run(storage.set("f", 1, expires=1.5))
        run(storage.set("g", 1, expires=0.001))
        run(storage.set("h", 1, expires=60.0))
        self.assertEqual([c[3] for c in self.storage.calls], [None, 30, 120, 2, 0, 2, 1, 60])
        for bad in [-1, datetime.timedelta(seconds=-1), -0.5, float("nan"), float("inf")]:
            with self.assertRaises(ValueError):
                run(storage.set("x", 1, expires=bad))
        for bad in ["10", True]:
            with self.assertRaises(TypeError):
                run(storage.set("x", 1, expires=bad))

    def test_has_delete_and_sizes(self):
        storage = warden.Plugin.storage
        self.assertFalse(run(storage.has("k")))
        run(storage.set("k", "v"))
        self.assertTrue(run(storage.has("k")))
        run(storage.delete("k"))
        run(storage.delete("k"))
        self.assertIsNone(run(storage.get("k")))
        self.assertEqual(run(storage.get_storage_size()), 2048)
        self.assertEqual(run(storage.get_storage_size_human()), "2.0 KiB")

    def test_host_errors_raise_the_named_exceptions(self):
        storage = warden.Plugin.storage
        with self.assertRaises(warden.AccessDenied) as denied:
            run(storage.get("k", shared=True))
        self.assertEqual(denied.exception.message, "no shared grant")
        self.assertIsInstance(denied.exception, warden.StorageError)
        with self.assertRaises(warden.QuotaExceeded):
            run(storage.set("full", "x"))

    def test_keys_must_be_strings(self):
        with self.assertRaises(TypeError):
            run(warden.Plugin.storage.get(1))


class BeyondSlackMachine(HostTest):
    def setUp(self):
        super().setUp()
        self.s = warden.Plugin.storage

    def test_raw_bytes_are_stored_unchanged(self):
        run(self.s.set_bytes("raw", b"\x89PNG", expires=datetime.timedelta(seconds=0.5)))
        self.assertEqual(self.storage.data["raw"], b"\x89PNG")
        self.assertEqual(self.storage.calls[-1][3], 1)
        self.assertEqual(run(self.s.get_bytes("raw")), b"\x89PNG")
        self.assertIsNone(run(self.s.get_bytes("missing")))
        with self.assertRaises(warden.Decode):
            run(self.s.get("raw"))
        run(self.s.set("json", "text"))
        self.assertEqual(run(self.s.get_bytes("json")), b'"text"')
        with self.assertRaises(TypeError):
            run(self.s.set_bytes("raw", "not bytes"))

    def test_list_keys_pages_with_a_cursor(self):
        for key in ["k:c", "k:a", "k:b", "other"]:
            run(self.s.set(key, 1))
        page = run(self.s.list_keys("k:", limit=2))
        self.assertIsInstance(page, warden.KeyPage)
        self.assertEqual(page, (["k:a", "k:b"], "k:b"))
        self.assertEqual(page.next, "k:b")
        last = run(self.s.list_keys("k:", page.next, limit=2))
        self.assertEqual((last.keys, last.next), (["k:c"], None))
        self.assertEqual(run(self.s.list_keys()).keys, ["k:a", "k:b", "k:c", "other"])
        self.assertEqual(self.storage.calls[-1], ("list_keys", "", None, 1000))
        for bad, error in [({"limit": -1}, ValueError), ({"limit": 2**32}, ValueError),
                           ({"limit": "2"}, TypeError), ({"cursor": 3}, TypeError),
                           ({"prefix": None}, TypeError)]:
            with self.assertRaises(error, msg=repr(bad)):
                run(self.s.list_keys(**bad))

    def test_keys_fetches_every_page(self):
        keys = [f"n:{i:04}" for i in range(2500)]
        for key in keys:
            self.storage.data[key] = b"1"
        self.assertEqual(run(self.s.keys("n:")), keys)
        pages = [c for c in self.storage.calls if c[0] == "list_keys"]
        self.assertEqual([c[2] for c in pages], [None, "n:0999", "n:1999"])
        self.assertEqual(run(self.s.keys("none:")), [])

    def test_increment_counts_and_reads_back_as_int(self):
        self.assertEqual(run(self.s.increment("visits")), 1)
        self.assertEqual(run(self.s.increment("visits", 41)), 42)
        self.assertEqual(run(self.s.increment("visits", -50)), -8)
        self.assertEqual(run(self.s.get("visits")), -8)
        run(self.s.set("text", "hello"))
        with self.assertRaises(warden.InvalidValue):
            run(self.s.increment("text"))
        run(self.s.increment("big", 2**63 - 1))
        with self.assertRaises(warden.InvalidValue) as overflow:
            run(self.s.increment("big"))
        self.assertEqual(overflow.exception.message, "overflow")
        for bad, error in [(2**63, ValueError), (-(2**63) - 1, ValueError), (1.0, TypeError), (True, TypeError)]:
            with self.assertRaises(error, msg=repr(bad)):
                run(self.s.increment("visits", bad))

    def test_compare_and_swap_compares_stored_json(self):
        self.assertTrue(run(self.s.compare_and_swap("job", None, "worker-a")))
        self.assertFalse(run(self.s.compare_and_swap("job", None, "worker-b")))
        self.assertEqual(run(self.s.get("job")), "worker-a")
        self.assertFalse(run(self.s.compare_and_swap("job", "worker-b", "worker-c")))
        self.assertTrue(run(self.s.compare_and_swap("job", "worker-a", {"by": [1, b"\x00"]})))
        self.assertEqual(self.storage.data["job"], b'{"by":[1,{"$bytes":"AA=="}]}')
        self.assertTrue(run(self.s.compare_and_swap("job", {"by": [1, b"\x00"]}, None)))
        self.assertNotIn("job", self.storage.data)
        with self.assertRaises(warden.Encode):
            run(self.s.compare_and_swap("job", None, {1, 2}))
        with self.assertRaises(warden.AccessDenied):
            run(self.s.compare_and_swap("job", None, 1, shared=True))

    def test_compare_and_swap_bytes(self):
        self.assertTrue(run(self.s.compare_and_swap_bytes("raw", None, b"\x01")))
        self.assertFalse(run(self.s.compare_and_swap_bytes("raw", b"\x02", b"\x03")))
        self.assertTrue(run(self.s.compare_and_swap_bytes("raw", bytearray(b"\x01"), None)))
        self.assertEqual(self.storage.calls[-1], ("compare_and_swap", "raw", b"\x01", None))
        with self.assertRaises(TypeError):
            run(self.s.compare_and_swap_bytes("raw", None, "text"))

    def test_batches(self):
        run(self.s.set_many({"a": 1, "b": [2], "c": b"\x03"}))
        run(self.s.set_many([("d", "four"), ("a", "one")], expires=60))
        self.assertEqual(self.storage.calls[-1], ("set_many", [("d", b'"four"'), ("a", b'"one"')], 60))
        self.assertEqual(
            run(self.s.get_many(["a", "b", "missing", "c", "d"])),
            ["one", [2], None, b"\x03", "four"],
        )
        self.assertEqual(run(self.s.get_many(k for k in ["d"])), ["four"])
        self.assertEqual(run(self.s.get_many([])), [])
        run(self.s.delete_many(["a", "b", "missing"]))
        self.assertEqual(sorted(self.storage.data), ["c", "d"])
        with self.assertRaises(warden.Encode):
            run(self.s.set_many({"x": {1}}))
        with self.assertRaises(warden.TooLarge):
            run(self.s.set_many({f"k{i}": i for i in range(1001)}))
        with self.assertRaises(warden.AccessDenied):
            run(self.s.get_many(["c"], shared=True))
        for bad in [lambda: self.s.get_many("ab"), lambda: self.s.delete_many([1]),
                    lambda: self.s.set_many([("a", 1, 2)]), lambda: self.s.set_many({1: "x"})]:
            with self.assertRaises(TypeError):
                run(bad())
        self.assertEqual(sorted(self.storage.data), ["c", "d"])

    def test_namespace_size(self):
        run(self.s.set_bytes("ab", b"cd"))
        self.assertEqual(run(self.s.get_namespace_size()), 4)


class Greeter(warden.Plugin):
    """Greets people.

    More text that is not part of the description."""

    __version__ = "1.2.3"

    async def init(self):
        self.greeted = 0

    @warden.respond_to(r"hello (?P<name>\w+)(?: from (?P<place>\w+))?")
    async def hello(self, msg, name, place):
        self.greeted += 1
        await self.storage.set("last", name)
        await msg.say(f"hello {name} from {place} ({msg.user} in {msg.channel}, #{self.greeted})")

    @warden.listen_to(r"^ping$", flags=0)
    @warden.listen_to(r"^pong$", flags=re.IGNORECASE | re.MULTILINE)
    def ping(self, msg):
        return "sync handlers work too"

    @warden.respond_to(r"fail")
    async def fail(self, msg):
        await self.storage.get("k", shared=True)

    @warden.respond_to(r"sleep")
    async def sleep(self, msg):
        await asyncio.sleep(1)


class Components(HostTest):
    def world(self, cls=Greeter):
        return warden.component(cls)()

    def test_manifest(self):
        manifest = self.world().manifest()
        self.assertEqual(manifest.id, f"{__name__}.Greeter")
        self.assertEqual(manifest.version, "1.2.3")
        self.assertEqual(manifest.description, "Greets people.")
        self.assertEqual(
            [(r.kind, r.pattern, r.ignore_case, r.handler) for r in manifest.routes],
            [
                (RouteKind.RESPOND_TO, r"hello (?P<name>\w+)(?: from (?P<place>\w+))?", True, "hello"),
                (RouteKind.LISTEN_TO, "^ping$", False, "ping"),
                (RouteKind.LISTEN_TO, "(?m)^pong$", True, "ping"),
                (RouteKind.RESPOND_TO, "fail", True, "fail"),
                (RouteKind.RESPOND_TO, "sleep", True, "sleep"),
            ],
        )

    def test_captures_become_keyword_arguments(self):
        world = self.world()
        world.handle(0, WitMessage("hello bob"), [Capture("name", "bob"), Capture("place", None)])
        world.handle(0, WitMessage("hello eve from paris"), [Capture("name", "eve"), Capture("place", "paris")])
        self.assertEqual(
            self.chat.said,
            ["hello bob from None (alice in general, #1)", "hello eve from paris (alice in general, #2)"],
        )
        self.assertEqual(self.storage.data["last"], b'"eve"')

    def test_errors_become_handler_errors(self):
        world = self.world()
        log = io.StringIO()
        with contextlib.redirect_stderr(log):
            with self.assertRaises(Err) as failed:
                world.handle(3, WitMessage("fail"), [])
            self.assertEqual(failed.exception.value, "AccessDenied: no shared grant")
            with self.assertRaises(Err) as slept:
                world.handle(4, WitMessage("sleep"), [])
            self.assertIn("RuntimeError", slept.exception.value)
            with self.assertRaises(Err):
                world.handle(99, WitMessage("nothing"), [])
            world.handle(1, WitMessage("ping"), [])
        # The tracebacks go to stderr, which the host logs.
        self.assertIn("Traceback", log.getvalue())
        self.assertIn("warden.storage.AccessDenied: no shared grant", log.getvalue())

    def test_identity_must_be_valid(self):
        def local():
            class Inner(warden.Plugin):
                pass

            return Inner

        with self.assertRaisesRegex(ValueError, "not a valid Warden identity"):
            warden.component(local())

    def test_handlers_must_take_the_named_groups(self):
        @top_level
        class Missing(warden.Plugin):
            @warden.respond_to(r"(?P<key>\w+)")
            async def handler(self, msg):
                pass

        with self.assertRaisesRegex(TypeError, "no parameter for the named group 'key'"):
            warden.component(Missing)

        @top_level
        class Extra(warden.Plugin):
            @warden.respond_to(r"(?P<key>\w+)")
            async def handler(self, msg, key, other):
                pass

        with self.assertRaisesRegex(TypeError, "parameter 'other' is not a named group"):
            warden.component(Extra)

        @top_level
        class Flexible(warden.Plugin):
            @warden.respond_to(r"(?P<key>\w+) (?P<value>\w+)")
            async def handler(self, msg, key, other=None, **rest):
                pass

        warden.component(Flexible)

    def test_patterns_the_host_cannot_match_are_refused(self):
        for pattern, what in [(r"a(?=b)", "look-around"), (r"(?P<x>a)(?P=x)", "back-references")]:

            @top_level
            class Bad(warden.Plugin):
                @warden.respond_to(pattern)
                async def handler(self, msg, **groups):
                    pass

            with self.assertRaisesRegex(ValueError, what):
                warden.component(Bad)
        with self.assertRaisesRegex(ValueError, "unsupported flags"):
            warden.respond_to("x", flags=re.LOCALE | re.IGNORECASE)

    def test_the_module_must_define_one_plugin(self):
        module = types.ModuleType("two_plugins")
        for name in ["A", "B"]:
            module.__dict__[name] = type(name, (warden.Plugin,), {"__module__": "two_plugins"})
        with self.assertRaisesRegex(LookupError, "found: two_plugins.A, two_plugins.B"):
            warden.component(module)
        self.assertEqual(warden.component(module, "B").identity, "two_plugins.B")

    def test_a_package_may_define_its_plugin_in_a_submodule(self):
        package = types.ModuleType("echo")
        package.Echo = type("Echo", (warden.Plugin,), {"__module__": "echo.plugin"})
        package.Plugin = warden.Plugin
        self.assertEqual(warden.component(package).identity, "echo.plugin.Echo")

    def test_msg_say_takes_text(self):
        with self.assertRaises(TypeError):
            run(warden.Message("x").say(3))


if __name__ == "__main__":
    unittest.main()


@top_level
class Featured(warden.Plugin):
    """Shows the second contract's features."""

    @warden.respond_to(r"^greet$")
    async def greet(self, msg):
        """greet: says the greeting setting"""
        await msg.reply(self.settings["greeting"])

    @warden.respond_to(r"^thread$")
    async def thread(self, msg):
        await msg.reply("in thread", in_thread=True)
        await msg.say("there", thread_ts="T1")

    @warden.required_settings(["api_key"])
    @warden.respond_to(r"^who$")
    async def who(self, msg):
        await msg.say(f"{msg.sender.id}/{msg.sender.name}/{msg.ts}/{msg.thread_ts}/{msg.at_sender}")

    @warden.schedule(hour=9, minute=30, day_of_week="mon-fri", channel="standup")
    async def standup(self):
        """standup: the daily call"""
        await warden.say("standup time")


class SecondContract(HostTest):
    def world(self):
        return warden.component(Featured)()

    def test_the_manifest_carries_docs_schedules_and_required_settings(self):
        manifest = self.world().manifest()
        docs = {route.handler: route.doc for route in manifest.routes}
        self.assertEqual(docs, {"greet": "greet: says the greeting setting", "thread": "", "who": ""})
        self.assertEqual(manifest.required_settings, ["api_key"])
        self.assertEqual(
            manifest.schedules,
            [Schedule("0 30 9 * * mon-fri *", "standup", "standup", "standup: the daily call")],
        )

    def test_settings_replies_and_threads(self):
        world = self.world()
        world.handle(0, WitMessage("greet"), [])
        world.handle(1, WitMessage("thread"), [])
        world.handle(2, WitMessage("who", Sender("U1", "Ann"), id="170.1", thread="169.0"), [])
        self.assertEqual(
            self.chat.sent,
            [
                ("reply", "hi", False),
                ("reply", "in thread", True),
                ("say", "there", "T1"),
                ("say", "U1/Ann/170.1/169.0/<@U1>", None),
            ],
        )

    def test_a_schedule_runs_its_method(self):
        world = self.world()
        world.run_schedule(0)
        self.assertEqual(self.chat.sent, [("say", "standup time", None)])
        with self.assertRaises(Err):
            world.run_schedule(5)

    def test_settings_are_read_only_and_show_no_values(self):
        settings = Featured().settings
        self.assertEqual(dict(settings), {"greeting": "hi", "api_key": "s3cret"})
        self.assertNotIn("s3cret", repr(settings))
        with self.assertRaises(TypeError):
            settings["greeting"] = "changed"

    def test_apscheduler_fields_become_cron_expressions(self):
        self.assertEqual(warden._cron(hour=9), "0 0 9 * * * *")
        self.assertEqual(warden._cron(minute="*/5"), "0 */5 * * * * *")
        self.assertEqual(warden._cron(day_of_week="0,6"), "0 0 0 * * mon,sun *")
        self.assertEqual(warden._cron(year=2027), "0 0 0 1 1 * 2027")
        for bad in [dict(week=2), dict(timezone="Europe/Amsterdam"), dict(), dict(day_of_week="7")]:
            with self.assertRaises(ValueError):
                warden._cron(**bad)

    def test_stored_objects_read_back_with_attributes(self):
        run(warden.Plugin.storage.set("manual", {"human": {"A": {"x.y": {"command": "c", "help": "h"}}}}))
        manual = run(warden.Plugin.storage.get("manual"))
        self.assertEqual(manual.human["A"]["x.y"].command, "c")
        self.assertEqual(manual, {"human": {"A": {"x.y": {"command": "c", "help": "h"}}}})
        with self.assertRaises(AttributeError):
            manual.robot


class Packages(unittest.TestCase):
    """Slack Machine's layout: a plugin class in a module of a package."""

    def test_a_class_anywhere_in_a_package_is_found_with_its_dotted_identity(self):
        import importlib
        import os
        import sys
        import tempfile

        with tempfile.TemporaryDirectory() as root:
            package = os.path.join(root, "smpkg")
            os.mkdir(package)
            with open(os.path.join(package, "__init__.py"), "w") as f:
                f.write("")
            with open(os.path.join(package, "hitchhikers.py"), "w") as f:
                f.write(
                    "from warden import MachineBasePlugin, respond_to\n"
                    "class UltimateQuestionPlugin(MachineBasePlugin):\n"
                    "    @respond_to('answer')\n"
                    "    async def answer(self, msg):\n"
                    "        await msg.say('42')\n"
                )
            with open(os.path.join(package, "other.py"), "w") as f:
                f.write(
                    "from warden import Plugin\n"
                    "class Other(Plugin):\n"
                    "    pass\n"
                )
            sys.path.insert(0, root)
            try:
                module = importlib.import_module("smpkg")
                with self.assertRaises(LookupError) as e:
                    warden.component(module)
                self.assertIn("smpkg.hitchhikers.UltimateQuestionPlugin, smpkg.other.Other", str(e.exception))
                for name in ["UltimateQuestionPlugin", "hitchhikers.UltimateQuestionPlugin"]:
                    world = warden.component(module, name)
                    self.assertEqual(world.identity, "smpkg.hitchhikers.UltimateQuestionPlugin")
                world = warden.component(importlib.import_module("smpkg.hitchhikers"))
                self.assertEqual(world.identity, "smpkg.hitchhikers.UltimateQuestionPlugin")
            finally:
                sys.path.remove(root)
                for name in [m for m in sys.modules if m == "smpkg" or m.startswith("smpkg.")]:
                    del sys.modules[name]
