"""Exercises the Python SDK inside a real component: values of every
supported type, storage errors, expiry, handler failures, logging, and the
storage calls beyond Slack Machine's (key pages, counters, compare-and-swap,
batches, the namespace size)."""

import asyncio
import datetime
import json
import time

import warden
from warden import Plugin, listen_to, log, respond_to

__version__ = "2.0.0"


def show(value):
    return f"{type(value).__name__} {value!r}"


class Probe(Plugin):
    """Exercises the Python SDK."""

    async def init(self):
        self.inits = getattr(self, "inits", 0) + 1
        self.calls = 0

    @respond_to(r"^py set (?P<key>\S+) = (?P<value>.*)$")
    async def set_json(self, msg, key, value):
        await self.storage.set(key, json.loads(value))
        await msg.say("ok")

    @respond_to(r"^py set-bytes (?P<key>\S+) = (?P<hex>[0-9a-f]*)$")
    async def set_bytes(self, msg, key, hex):
        await self.storage.set(key, bytes.fromhex(hex))
        await msg.say("ok")

    @respond_to(r"^py set-tuple (?P<key>\S+)$")
    async def set_tuple(self, msg, key):
        await self.storage.set(key, ("a", (1, b"\x00")))
        await msg.say("ok")

    @respond_to(r"^py expire (?P<key>\S+) in (?P<seconds>\d+)(?P<unit> ms)?$")
    async def expire(self, msg, key, seconds, unit):
        if unit:
            expires = datetime.timedelta(milliseconds=int(seconds))
        else:
            expires = int(seconds)
        await self.storage.set(key, "expiring", expires=expires)
        await msg.say("ok")

    @respond_to(r"^py get (?P<key>\S+)$")
    async def get(self, msg, key):
        await msg.say(show(await self.storage.get(key)))

    @respond_to(r"^py has (?P<key>\S+)$")
    async def has(self, msg, key):
        await msg.say(show(await self.storage.has(key)))

    @respond_to(r"^py delete (?P<key>\S+)$")
    async def delete(self, msg, key):
        await self.storage.delete(key)
        await msg.say("ok")

    @respond_to(r"^py shared (?P<op>get|set) (?P<key>\S+)$")
    async def shared(self, msg, op, key):
        try:
            if op == "get":
                await msg.say(show(await self.storage.get(key, shared=True)))
            else:
                await self.storage.set(key, "shared value", shared=True)
                await msg.say("ok")
        except warden.StorageError as e:
            await msg.say(f"{type(e).__name__}: {e.message}")

    @respond_to(r"^py store (?P<what>set|bad key|too large)$")
    async def store_error(self, msg, what):
        try:
            if what == "set":
                await self.storage.set("k", {1, 2})
            elif what == "bad key":
                await self.storage.set("", "empty key")
            else:
                await self.storage.set("big", "x" * 2_000_000)
        except warden.StorageError as e:
            await msg.say(f"{type(e).__name__}: {e.message}")

    @respond_to(r"^py sizes$")
    async def sizes(self, msg):
        size = await self.storage.get_storage_size()
        human = await self.storage.get_storage_size_human()
        await msg.say(f"{type(size).__name__} {type(human).__name__}")

    @respond_to(r"^py fail$")
    async def fail(self, msg):
        await msg.say("about to fail")
        raise ValueError("boom")

    @respond_to(r"^py sleep$")
    async def sleep(self, msg):
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)

    @respond_to(r"^py wait$")
    def wait(self, msg):
        """Blocks for 300 ms, then says how many calls its instance has
        served: each instance counts for itself."""
        self.calls += 1
        time.sleep(0.3)
        warden.run(msg.say(f"call {self.calls} of this instance"))

    @respond_to(r"^py spin$")
    def spin(self, msg):
        while True:
            pass

    @respond_to(r"^py state$")
    def state(self, msg):
        self.calls += 1
        warden.run(msg.say(f"inits {self.inits} calls {self.calls}"))

    @respond_to(r"^py log (?P<text>.+)$")
    async def log(self, msg, text):
        log.info(f"logged {text}")
        print(f"printed {text}")
        await msg.say("ok")

    @listen_to(r"^py message(?: (?P<extra>\w+))?$", flags=0)
    async def message(self, msg, extra):
        await msg.say(f"{msg.text} | {msg.user} | {msg.channel} | {msg.is_addressed} | {extra!r}")

    # Beyond Slack Machine: each route replies with the call's result, or
    # with the storage error it raised.

    async def answer(self, msg, call):
        try:
            await msg.say(show(await call))
        except warden.StorageError as e:
            await msg.say(f"{type(e).__name__}: {e.message}")

    @respond_to(r"^py raw set (?P<key>\S+) = (?P<hex>[0-9a-f]*)$")
    async def raw_set(self, msg, key, hex):
        await self.answer(msg, self.storage.set_bytes(key, bytes.fromhex(hex)))

    @respond_to(r"^py raw get (?P<key>\S+)$")
    async def raw_get(self, msg, key):
        await self.answer(msg, self.storage.get_bytes(key))

    @respond_to(r"^py list (?P<prefix>\S*) limit (?P<limit>\d+)(?: after (?P<cursor>\S+))?(?P<shared> shared)?$")
    async def list_keys(self, msg, prefix, limit, cursor, shared):
        try:
            page = await self.storage.list_keys(prefix, cursor, int(limit), shared=bool(shared))
            await msg.say(f"{type(page).__name__} {page.keys!r} {page.next!r}")
        except warden.StorageError as e:
            await msg.say(f"{type(e).__name__}: {e.message}")

    @respond_to(r"^py keys (?P<prefix>\S*)$")
    async def keys(self, msg, prefix):
        await self.answer(msg, self.storage.keys(prefix))

    @respond_to(r"^py many keys (?P<prefix>\S+) (?P<count>\d+)$")
    async def many_keys(self, msg, prefix, count):
        # More keys than one page holds, for `keys` to page through.
        count = int(count)
        for start in range(0, count, 1000):
            await self.storage.set_many({f"{prefix}{i:05}": i for i in range(start, min(count, start + 1000))})
        keys = await self.storage.keys(prefix)
        ordered = keys == sorted(keys) and keys == [f"{prefix}{i:05}" for i in range(count)]
        await msg.say(f"{len(keys)} ordered {ordered}")

    @respond_to(r"^py incr (?P<key>\S+) by (?P<delta>-?\d+)$")
    async def incr(self, msg, key, delta):
        await self.answer(msg, self.storage.increment(key, int(delta)))

    @respond_to(r"^py cas (?P<key>\S+) (?P<expected>.+) -> (?P<new>.+)$")
    async def cas(self, msg, key, expected, new):
        def value(text):
            return None if text == "missing" else json.loads(text)

        await self.answer(msg, self.storage.compare_and_swap(key, value(expected), value(new)))

    @respond_to(r"^py cas-bytes (?P<key>\S+) (?P<expected>\S+) -> (?P<new>\S+)$")
    async def cas_bytes(self, msg, key, expected, new):
        def value(text):
            return None if text == "missing" else bytes.fromhex(text)

        await self.answer(msg, self.storage.compare_and_swap_bytes(key, value(expected), value(new)))

    @respond_to(r"^py get-many (?P<keys>\S+)$")
    async def get_many(self, msg, keys):
        await self.answer(msg, self.storage.get_many(keys.split(",")))

    @respond_to(r"^py set-many (?P<entries>\{.*\})(?: expires (?P<expires>\d+))?$")
    async def set_many(self, msg, entries, expires):
        expires = None if expires is None else int(expires)
        await self.answer(msg, self.storage.set_many(json.loads(entries), expires=expires))

    @respond_to(r"^py set-many too many$")
    async def set_too_many(self, msg):
        await self.answer(msg, self.storage.set_many((f"k{i}", i) for i in range(1001)))

    @respond_to(r"^py delete-many (?P<keys>\S+)$")
    async def delete_many(self, msg, keys):
        await self.answer(msg, self.storage.delete_many(keys.split(",")))

    @respond_to(r"^py namespace size$")
    async def namespace_size(self, msg):
        await self.answer(msg, self.storage.get_namespace_size())

    # The second contract: settings, replies, threads, the sender, and a
    # schedule.

    @respond_to(r"^py setting (?P<name>\S+)$")
    async def setting(self, msg, name):
        """py setting NAME: tells a setting's value"""
        await msg.say(f"{name} = {self.settings.get(name, '(not set)')}")

    @respond_to(r"^py settings$")
    async def setting_names(self, msg):
        await msg.say(f"settings: {sorted(self.settings)}")

    @respond_to(r"^py reply$")
    async def reply(self, msg):
        await msg.reply("replied")
        await msg.reply("threaded", in_thread=True)
        await msg.say("said", thread_ts="T42")

    @respond_to(r"^py who$")
    async def who(self, msg):
        await msg.say(f"{msg.sender.id} {msg.sender.name} {msg.ts} {msg.thread_ts} {msg.at_sender}")

    @warden.schedule(second="*", channel="py-ticks")
    async def tick(self):
        """tick: counts the seconds"""
        count = await self.storage.increment("py-ticks")
        await warden.say(f"py tick {count}")
