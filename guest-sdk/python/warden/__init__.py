"""Write Warden plugins in Python, the way Slack Machine plugins are written.

A plugin is one class, built into a WebAssembly component with
`guest-sdk/python/build.py`::

    from warden import Plugin, respond_to, listen_to

    class GreeterPlugin(Plugin):
        \"\"\"Greets people and remembers who said hello.\"\"\"

        @respond_to(r"hello (?P<name>\\w+)")
        async def hello(self, msg, name):
            await self.storage.set(f"seen-{name}", True)
            await msg.say(f"hello, {name}!")

        @listen_to(r"^good (?P<when>morning|night)$", flags=0)
        async def good(self, msg, when):
            await msg.say(f"good {when} to you too")

- The plugin's identity (what its storage is namespaced by) is its fully
  qualified class name, `module.ClassName`, as in Slack Machine: the class
  above in `greeter.py` is `greeter.GreeterPlugin`.
- Its description is the first paragraph of the class docstring; its
  version is `__version__` on the class or its module (default `0.0.0`).
- `respond_to` routes see messages addressed to the bot, `listen_to`
  routes every message. Named groups of the pattern arrive as keyword
  arguments (`None` for a group that did not take part in the match).
- Handlers are `async def` (or plain `def`); `self.storage` (a
  `warden.storage.PluginStorage`) and `msg.say` are coroutines to await.
- One instance of the class is created for the first message and kept for
  the next ones; `async def init(self)` runs once right after it is created.
- An exception escaping a handler is logged by the host with the plugin's
  identity (the traceback goes to the log too) and answered with an error
  reply; the plugin keeps running.
- `msg.reply(text)` answers mentioning the sender, `msg.reply(text,
  in_thread=True)` in the message's thread, `msg.say(text, thread_ts=...)`
  in a thread; `msg.sender` has `.id` and `.name`.
- A handler's docstring (`command: what it does`) is its line in the help
  manual the host writes to the shared key `manual`.
- `self.settings` is the plugin's `[settings."ID"]` table;
  `@required_settings([...])` keeps the plugin from loading without them.
- `@schedule(hour=9, minute=30)` (Slack Machine's cron fields, UTC) runs a
  method `async def name(self)` on a timetable; it sends with
  `await warden.say(text)`.
"""

import importlib
import inspect
import re
import sys
import traceback

from . import _host, log, storage
from .storage import (
    AccessDenied,
    Backend,
    Decode,
    Encode,
    InvalidKey,
    InvalidValue,
    KeyPage,
    PluginStorage,
    QuotaExceeded,
    StorageError,
    TooLarge,
)

__all__ = [
    "Plugin",
    "MachineBasePlugin",
    "Message",
    "Sender",
    "respond_to",
    "listen_to",
    "schedule",
    "required_settings",
    "say",
    "component",
    "run",
    "log",
    "storage",
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
]

_IDENTITY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*\Z")
_MAX_IDENTITY_BYTES = 128

# The flags Warden can honour, with the inline flag each becomes (the
# host's regex engine knows the same letters); IGNORECASE travels apart.
_INLINE_FLAGS = ((re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"))
_SUPPORTED_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE | re.UNICODE


class Sender:
    """Who sent a message (Slack Machine's `msg.sender`)."""

    __slots__ = ("id", "name")

    def __init__(self, id, name=None):
        #: The sender's id, as the adapter knows it (a Slack user id, say).
        self.id = id
        #: A name to show, where the adapter knows one; else the id.
        self.name = name if name is not None else id

    def __repr__(self):
        return f"Sender(id={self.id!r}, name={self.name!r})"


def _text(method, text):
    if not isinstance(text, str):
        raise TypeError(f"msg.{method} takes a str, not {type(text).__name__}")
    return text


class Message:
    """The message being handled."""

    __slots__ = ("text", "sender", "channel", "is_addressed", "ts", "thread_ts")

    def __init__(self, text, user="", channel="", is_addressed=True, *, name=None, ts=None, thread_ts=None):
        #: The text the route matched: for messages addressed to the bot,
        #: the text after the mention.
        self.text = text
        #: Who sent it (`.id`, `.name`).
        self.sender = Sender(user, name)
        #: Where it was sent.
        self.channel = channel
        #: Whether the message was addressed to the bot.
        self.is_addressed = is_addressed
        #: The message's id in its channel, where the adapter has one
        #: (Slack's `ts`); else `None`.
        self.ts = ts
        #: The thread the message is in (the id of its first message), or
        #: `None`.
        self.thread_ts = thread_ts

    @property
    def user(self):
        """The sender's id."""
        return self.sender.id

    @property
    def at_sender(self):
        """The sender as a Slack mention, `<@ID>`."""
        return f"<@{self.sender.id}>"

    @property
    def in_thread(self):
        """Whether the message was posted in a thread."""
        return self.thread_ts is not None

    async def say(self, text, thread_ts=None, ephemeral=False, **_ignored):
        """Sends `text` to the message's channel; in thread `thread_ts`
        when given. `ephemeral` and Slack's other keyword arguments are
        accepted and have no effect."""
        _text("say", text)
        if thread_ts is not None and not isinstance(thread_ts, str):
            raise TypeError(f"msg.say: thread_ts must be a str, not {type(thread_ts).__name__}")
        _host.require(_host.chat, "chat").say(text, thread_ts)

    async def reply(self, text, in_thread=False, ephemeral=False, **_ignored):
        """Answers the sender: in the channel, mentioning them, or with
        `in_thread=True` in the message's thread without the mention (as
        Slack Machine's `msg.reply`)."""
        _text("reply", text)
        _host.require(_host.chat, "chat").reply(text, bool(in_thread))

    def __repr__(self):
        return (
            f"Message(text={self.text!r}, sender={self.sender!r}, "
            f"channel={self.channel!r}, is_addressed={self.is_addressed!r}, "
            f"ts={self.ts!r}, thread_ts={self.thread_ts!r})"
        )


async def say(text):
    """Sends `text` to the channel of the call under way: a scheduled
    handler's channel (it has no message to answer)."""
    _text("say", text)
    _host.require(_host.chat, "chat").say(text, None)


class _Settings:
    """The plugin's settings (Slack Machine's `self.settings`): a read-only
    mapping of its `[settings."ID"]` table, read from the host on first use."""

    def __init__(self):
        self._values = None

    def _all(self):
        if self._values is None:
            store = _host.require(_host.store, "settings")
            try:
                pairs = store.get_all()
            except _host.Err as e:
                raise RuntimeError(f"warden: reading the settings failed: {e.value!r}") from None
            self._values = dict(pairs)
        return self._values

    def __getitem__(self, key):
        return self._all()[key]

    def __contains__(self, key):
        return key in self._all()

    def __iter__(self):
        return iter(self._all())

    def __len__(self):
        return len(self._all())

    def get(self, key, default=None):
        return self._all().get(key, default)

    def keys(self):
        return self._all().keys()

    def values(self):
        return self._all().values()

    def items(self):
        return self._all().items()

    def __repr__(self):
        # Values may be secrets: show the names only.
        return f"<settings {sorted(self._all())!r}>"


try:
    from collections.abc import Mapping as _Mapping

    _Mapping.register(_Settings)
except ImportError:  # pragma: no cover
    pass


class _SettingsDescriptor:
    def __get__(self, instance, owner):
        if instance is None:
            return self
        settings = instance.__dict__.get("_warden_settings")
        if settings is None:
            settings = _Settings()
            instance.__dict__["_warden_settings"] = settings
        return settings


def required_settings(names):
    """Marks a plugin class (or one of its handlers) as needing settings
    `names` (Slack Machine's decorator of the same name): the host does not
    load the plugin while one is missing from its `[settings."ID"]` table,
    and says which. On a handler it applies to the whole plugin."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"required_settings takes str names, not {type(name).__name__}")

    def decorator(target):
        existing = list(getattr(target, "_warden_required_settings", ()))
        target._warden_required_settings = existing + [n for n in names if n not in existing]
        return target

    return decorator


# APScheduler's cron fields, most significant first, and the values it
# gives the ones left out after the last one given.
_CRON_ORDER = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")
_CRON_DEFAULTS = {"year": "*", "month": "1", "day": "1", "week": "*", "day_of_week": "*",
                  "hour": "0", "minute": "0", "second": "0"}
# APScheduler numbers weekdays from Monday (0) to Sunday (6); cron from
# Sunday (0): names mean the same to both.
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(expression):
    """An APScheduler `day_of_week` with its numbers turned into names."""
    def one(value):
        value = value.strip().lower()
        if value.isdigit():
            number = int(value)
            if not 0 <= number <= 6:
                raise ValueError(f"schedule: day_of_week {value!r} is not 0 (Monday) to 6 (Sunday)")
            return _WEEKDAYS[number]
        return value

    parts = []
    for part in expression.split(","):
        part, slash, step = part.partition("/")
        if part.strip() == "*":
            parts.append("*" + slash + step)
        elif "-" in part:
            start, end = part.split("-", 1)
            parts.append(f"{one(start)}-{one(end)}{slash}{step}")
        else:
            parts.append(one(part) + slash + step)
    return ",".join(parts)


def _cron(**given):
    """Slack Machine's (APScheduler's) cron fields as the host's cron
    expression, `second minute hour day month day-of-week year`, filled in
    as APScheduler fills them: a field left out before the last one given
    is `*`, after it its least value (weekdays `*`)."""
    for name in ("week", "start_date", "end_date", "jitter"):
        if given.pop(name, None) is not None:
            raise ValueError(f"schedule: {name} is not supported by Warden")
    timezone = given.pop("timezone", None)
    if timezone is not None and str(timezone).upper() not in ("UTC", "ETC/UTC", "Z"):
        raise ValueError("schedule: Warden's schedules run in UTC; leave timezone out or set it to 'UTC'")
    remaining = {name for name, value in given.items() if value is not None}
    if not remaining:
        raise ValueError("schedule: give at least one field, e.g. @schedule(minute='*/5')")
    fields = {}
    for name in _CRON_ORDER:
        if name in remaining:
            value = str(given[name]).replace(" ", "")
            fields[name] = _weekdays(value) if name == "day_of_week" else value
            remaining.discard(name)
        elif not remaining:
            fields[name] = _CRON_DEFAULTS[name]
        else:
            fields[name] = "*"
    return " ".join(fields[n] for n in ("second", "minute", "hour", "day", "month", "day_of_week", "year"))


class _ScheduleSpec:
    __slots__ = ("cron", "channel")

    def __init__(self, cron, channel):
        self.cron = cron
        self.channel = channel


def schedule(year=None, month=None, day=None, week=None, day_of_week=None, hour=None, minute=None,
             second=None, start_date=None, end_date=None, timezone=None, jitter=None, channel=None):
    """Runs the decorated method at the times the fields give (Slack
    Machine's `@schedule`, whose fields are APScheduler's cron fields), in
    UTC. The method takes only `self`; what it sends with `warden.say` goes
    to `channel`, or to `[schedules] channel` of the host's configuration.
    `week`, `start_date`, `end_date` and `jitter` are refused."""
    cron = _cron(year=year, month=month, day=day, week=week, day_of_week=day_of_week, hour=hour,
                 minute=minute, second=second, start_date=start_date, end_date=end_date,
                 timezone=timezone, jitter=jitter)
    if channel is not None and not isinstance(channel, str):
        raise TypeError(f"schedule: channel must be a str, not {type(channel).__name__}")

    def decorator(function):
        schedules = getattr(function, "_warden_schedules", None)
        if schedules is None:
            schedules = []
            function._warden_schedules = schedules
        schedules.insert(0, _ScheduleSpec(cron, channel))
        return function

    return decorator


class Plugin:
    """The base class of a Warden plugin (Slack Machine's
    `MachineBasePlugin`). Subclass it and decorate its methods with
    `respond_to` and `listen_to`."""

    #: The plugin's key-value storage, namespaced by its identity.
    storage = PluginStorage()
    #: The plugin's settings, `[settings."ID"]` of the host's configuration:
    #: a read-only mapping of names to strings.
    settings = _SettingsDescriptor()

    @property
    def bot_info(self):
        """The bot as Slack Machine's `self.bot_info` describes it: its
        `name` and `user_id`, from the plugin's settings `bot_name` and
        `bot_id` where the operator gives them, else `warden`."""
        name = self.settings.get("bot_name", "warden")
        user_id = self.settings.get("bot_id", name)
        return {"name": name, "id": user_id, "user_id": user_id}

    async def init(self):
        """Runs once, right after the plugin's instance is created (before
        its first message). Override it to prepare state."""


#: Slack Machine's name for `Plugin`.
MachineBasePlugin = Plugin


class _RouteSpec:
    __slots__ = ("kind", "regex", "flags")

    def __init__(self, kind, regex, flags):
        self.kind = kind
        self.regex = regex
        self.flags = flags


def _route_decorator(kind, name):
    def decorator_factory(regex, flags=re.IGNORECASE, handle_message_changed=False):
        if not isinstance(regex, str):
            raise TypeError(f"{name}: the pattern must be a str, not {type(regex).__name__}")
        flags = int(flags)
        unsupported = flags & ~int(_SUPPORTED_FLAGS)
        if unsupported:
            raise ValueError(
                f"{name}({regex!r}): unsupported flags {re.RegexFlag(unsupported)!r}; "
                "Warden supports IGNORECASE, MULTILINE, DOTALL and VERBOSE"
            )

        def decorator(function):
            routes = getattr(function, "_warden_routes", None)
            if routes is None:
                routes = []
                function._warden_routes = routes
            # Decorators apply bottom-up: keep the routes in reading order.
            routes.insert(0, _RouteSpec(kind, regex, flags))
            return function

        return decorator

    decorator_factory.__name__ = name
    return decorator_factory


respond_to = _route_decorator("respond_to", "respond_to")
respond_to.__doc__ = """Runs the decorated method for messages addressed to the bot whose
text matches `regex` (searched anywhere in the text, like `re.search`).
Named groups become keyword arguments. `flags`: `re.IGNORECASE` (the
default), `re.MULTILINE`, `re.DOTALL`, `re.VERBOSE`, or 0 for none.
`handle_message_changed` is accepted for Slack Machine compatibility and
has no effect. Patterns are matched by the host with Rust's `regex`:
look-around and back-references are refused."""

listen_to = _route_decorator("listen_to", "listen_to")
listen_to.__doc__ = """Like `respond_to`, for every message the bot sees, addressed to it or
not."""


def _unsupported_constructs(regex, flags):
    """Names of the constructs of `regex` that the host's regex engine does
    not have, as far as Python's own parser can tell."""
    try:
        from re import _parser as parser  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        import sre_parse as parser
    try:
        parsed = parser.parse(regex, flags)
    except Exception:
        return set()
    found = set()
    names = {
        "ASSERT": "look-around",
        "ASSERT_NOT": "look-around",
        "GROUPREF": "back-references",
        "GROUPREF_IGNORE": "back-references",
        "GROUPREF_LOC_IGNORE": "back-references",
        "GROUPREF_UNI_IGNORE": "back-references",
        "GROUPREF_EXISTS": "conditional groups",
        "ATOMIC_GROUP": "atomic groups",
        "POSSESSIVE_REPEAT": "possessive repeats",
    }

    def walk(node):
        if isinstance(node, (list, tuple)) or type(node).__name__ == "SubPattern":
            for item in node:
                if isinstance(item, tuple) and len(item) == 2 and hasattr(item[0], "name"):
                    what = names.get(item[0].name)
                    if what:
                        found.add(what)
                    walk(item[1])
                else:
                    walk(item)

    walk(parsed)
    return found


class _Route:
    __slots__ = ("kind", "pattern", "ignore_case", "name", "function", "doc")

    def __init__(self, kind, pattern, ignore_case, name, function):
        self.kind = kind
        self.pattern = pattern
        self.ignore_case = ignore_case
        self.name = name
        self.function = function
        self.doc = _doc_line(function)


def _doc_line(function):
    """The first line of a handler's docstring: its line in the help
    manual (Slack Machine reads `command: help` from it)."""
    doc = getattr(function, "__doc__", None)
    if not doc:
        return ""
    lines = inspect.cleandoc(doc).splitlines()
    return lines[0].strip() if lines else ""


class _Schedule:
    __slots__ = ("cron", "channel", "name", "function", "doc")

    def __init__(self, cron, channel, name, function):
        self.cron = cron
        self.channel = channel
        self.name = name
        self.function = function
        self.doc = _doc_line(function)


def _functions(cls):
    functions = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if inspect.isfunction(value):
                functions[name] = value
    return functions


def _schedules(cls):
    schedules = []
    for name, function in _functions(cls).items():
        for spec in getattr(function, "_warden_schedules", ()):
            if getattr(function, "_warden_routes", None):
                raise TypeError(f"{cls.__qualname__}.{name}: a method is a route or a schedule, not both")
            schedules.append(_Schedule(spec.cron, spec.channel, name, function))
    return schedules


def _required_settings(cls):
    names = []
    for target in [cls] + list(_functions(cls).values()):
        for name in getattr(target, "_warden_required_settings", ()):
            if name not in names:
                names.append(name)
    return names


def _check_handler(cls, name, function, spec):
    where = f"{cls.__qualname__}.{name} (@{spec.kind}({spec.regex!r}))"
    problems = _unsupported_constructs(spec.regex, spec.flags)
    if problems:
        raise ValueError(
            f"{where}: Warden matches patterns with Rust's regex, which has no "
            + " or ".join(sorted(problems))
        )
    try:
        groups = set(re.compile(spec.regex, spec.flags).groupindex)
    except re.error:
        # Syntax only the host's engine knows, such as `(?<name>...)`: the
        # host checks it when it loads the plugin.
        return
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return
    kinds = inspect.Parameter
    positional = [p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind == kinds.VAR_POSITIONAL for p in parameters):
        raise TypeError(f"{where}: a handler takes (self, msg, ...named groups)")
    rest = parameters[2:] if len(positional) >= 2 else []
    takes_any = any(p.kind == kinds.VAR_KEYWORD for p in parameters)
    named = {p.name for p in rest if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)}
    for group in sorted(groups):
        if group not in named and not takes_any:
            raise TypeError(f"{where}: the handler has no parameter for the named group {group!r}")
    for p in rest:
        if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY, kinds.POSITIONAL_ONLY):
            if p.name not in groups and p.default is kinds.empty:
                raise TypeError(
                    f"{where}: parameter {p.name!r} is not a named group of the pattern "
                    "(give it a default, or add the group)"
                )


def _routes(cls):
    routes = []
    for name, function in _functions(cls).items():
        for spec in getattr(function, "_warden_routes", ()):
            _check_handler(cls, name, function, spec)
            inline = "".join(letter for flag, letter in _INLINE_FLAGS if spec.flags & flag)
            pattern = f"(?{inline}){spec.regex}" if inline else spec.regex
            ignore_case = bool(spec.flags & re.IGNORECASE)
            routes.append(_Route(spec.kind, pattern, ignore_case, name, function))
    return routes


def _identity(cls):
    identity = f"{cls.__module__}.{cls.__qualname__}"
    if not _IDENTITY.match(identity) or len(identity.encode("utf-8")) > _MAX_IDENTITY_BYTES:
        raise ValueError(
            f"{identity!r} is not a valid Warden identity (a plugin's identity is its "
            "module and class name: 1 to 128 bytes of dotted segments, each an ASCII "
            "letter or '_' followed by letters, digits, '_' or '-'); define the class "
            "at the top level of a module with a plain name"
        )
    return identity


def _description(cls):
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return ""
    first = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(first.split())


def _version(cls):
    module = sys.modules.get(cls.__module__)
    version = cls.__dict__.get("__version__") or getattr(module, "__version__", None)
    return str(version) if version else "0.0.0"


def run(awaitable):
    """Drives `awaitable` (a handler's coroutine) to completion and returns
    its result; anything else is returned as it is.

    Warden calls plugins synchronously and a plugin has no event loop: the
    awaitables that work are the SDK's own (storage, `msg.say`) and other
    coroutines built on them. Awaiting something that needs an event loop
    (`asyncio.sleep(1)`, an `asyncio` future) raises `RuntimeError` inside
    the coroutine."""
    if not inspect.isawaitable(awaitable):
        return awaitable
    iterator = awaitable.__await__()
    pending = None
    while True:
        try:
            yielded = iterator.send(None) if pending is None else iterator.throw(pending)
        except StopIteration as stop:
            return stop.value
        pending = None
        if yielded is not None:
            pending = RuntimeError(
                f"cannot await {yielded!r}: a Warden plugin has no event loop; "
                "await the SDK's calls (storage, msg.say) and coroutines built on them"
            )


class _Component:
    """What the component's exports do for one plugin class."""

    def __init__(self, cls):
        self.cls = cls
        self.identity = _identity(cls)
        self.routes = _routes(cls)
        self.schedules = _schedules(cls)
        self.required_settings = _required_settings(cls)
        self.description = _description(cls)
        self.version = _version(cls)
        self.instance = None

    def manifest(self):
        types = _host.require(_host.types, "types")
        kinds = {"respond_to": types.RouteKind.RESPOND_TO, "listen_to": types.RouteKind.LISTEN_TO}
        return types.Manifest(
            id=self.identity,
            version=self.version,
            description=self.description,
            routes=[
                types.Route(
                    kind=kinds[route.kind],
                    pattern=route.pattern,
                    ignore_case=route.ignore_case,
                    handler=route.name,
                    doc=route.doc,
                )
                for route in self.routes
            ],
            schedules=[
                types.Schedule(cron=s.cron, channel=s.channel, handler=s.name, doc=s.doc)
                for s in self.schedules
            ],
            required_settings=list(self.required_settings),
        )

    def plugin(self):
        if self.instance is None:
            instance = self.cls()
            init = getattr(instance, "init", None)
            if init is not None:
                run(init())
            self.instance = instance
        return self.instance

    def handle(self, route, message, captures):
        try:
            if not 0 <= route < len(self.routes):
                raise LookupError(f"no route number {route}")
            handler = self.routes[route].function
            msg = Message(
                message.text,
                message.sender.id,
                message.channel,
                message.addressed,
                name=message.sender.name,
                ts=message.id,
                thread_ts=message.thread,
            )
            arguments = {capture.name: capture.value for capture in captures}
            run(handler(self.plugin(), msg, **arguments))
        except Exception as e:
            traceback.print_exc()
            raise _host.Err(f"{type(e).__name__}: {e}")

    def run_schedule(self, index):
        try:
            if not 0 <= index < len(self.schedules):
                raise LookupError(f"no schedule number {index}")
            run(self.schedules[index].function(self.plugin()))
        except Exception as e:
            traceback.print_exc()
            raise _host.Err(f"{type(e).__name__}: {e}")


def _modules(module):
    """`module` and, for a package, every module in it, imported."""
    found = [module]
    path = getattr(module, "__path__", None)
    if path is not None:
        import pkgutil

        for info in pkgutil.walk_packages(path, module.__name__ + "."):
            found.append(importlib.import_module(info.name))
    return found


def _find_class(target, class_name=None):
    if inspect.isclass(target):
        if not issubclass(target, Plugin):
            raise TypeError(f"{target.__qualname__} is not a subclass of warden.Plugin")
        return target
    module = target
    candidates = []
    for each in _modules(module):
        for value in vars(each).values():
            if (
                inspect.isclass(value)
                and issubclass(value, Plugin)
                and value is not Plugin
                and (value.__module__ == module.__name__ or value.__module__.startswith(module.__name__ + "."))
                and value not in candidates
            ):
                candidates.append(value)
    if class_name is not None:
        for value in candidates:
            dotted = f"{value.__module__}.{value.__qualname__}"
            if value.__qualname__ == class_name or dotted == class_name or dotted.endswith("." + class_name):
                return value
        raise LookupError(f"module {module.__name__} defines no Plugin subclass named {class_name!r}")
    if len(candidates) != 1:
        names = ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in candidates)) or "none"
        raise LookupError(
            f"module {module.__name__} must define exactly one subclass of warden.Plugin "
            f"(found: {names}); name the one to build with --class"
        )
    return candidates[0]


def component(target, class_name=None):
    """The class componentize-py expects as the component's `WitWorld`, for
    the plugin class `target`, or for the one `Plugin` subclass defined in
    the module `target` (`class_name` picks one when it defines several).

    `build.py` calls this for you. To run componentize-py yourself, end the
    plugin's module with `WitWorld = warden.component(MyPlugin)` and build
    that module."""
    spec = _Component(_find_class(target, class_name))

    class WitWorld:
        def manifest(self):
            return spec.manifest()

        def handle(self, route, message, captures):
            spec.handle(route, message, captures)

        def run_schedule(self, index):
            spec.run_schedule(index)

    WitWorld.plugin_class = spec.cls
    WitWorld.identity = spec.identity
    return WitWorld
