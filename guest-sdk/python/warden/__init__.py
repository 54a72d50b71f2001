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
"""

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
    "Message",
    "respond_to",
    "listen_to",
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


class Message:
    """The message being handled."""

    __slots__ = ("text", "user", "channel", "is_addressed")

    def __init__(self, text, user="", channel="", is_addressed=True):
        #: The text the route matched: for messages addressed to the bot,
        #: the text after the mention.
        self.text = text
        #: Who sent it.
        self.user = user
        #: Where it was sent.
        self.channel = channel
        #: Whether the message was addressed to the bot.
        self.is_addressed = is_addressed

    async def say(self, text):
        """Replies `text` to the message."""
        if not isinstance(text, str):
            raise TypeError(f"msg.say takes a str, not {type(text).__name__}")
        _host.require(_host.chat, "chat").say(text)

    def __repr__(self):
        return (
            f"Message(text={self.text!r}, user={self.user!r}, "
            f"channel={self.channel!r}, is_addressed={self.is_addressed!r})"
        )


class Plugin:
    """The base class of a Warden plugin (Slack Machine's
    `MachineBasePlugin`). Subclass it and decorate its methods with
    `respond_to` and `listen_to`."""

    #: The plugin's key-value storage, namespaced by its identity.
    storage = PluginStorage()

    async def init(self):
        """Runs once, right after the plugin's instance is created (before
        its first message). Override it to prepare state."""


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
    __slots__ = ("kind", "pattern", "ignore_case", "name", "function")

    def __init__(self, kind, pattern, ignore_case, name, function):
        self.kind = kind
        self.pattern = pattern
        self.ignore_case = ignore_case
        self.name = name
        self.function = function


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
    functions = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if inspect.isfunction(value):
                functions[name] = value
    routes = []
    for name, function in functions.items():
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
                )
                for route in self.routes
            ],
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
            msg = Message(message.text, message.user, message.channel, message.addressed)
            arguments = {capture.name: capture.value for capture in captures}
            run(handler(self.plugin(), msg, **arguments))
        except Exception as e:
            traceback.print_exc()
            raise _host.Err(f"{type(e).__name__}: {e}")


def _find_class(target, class_name=None):
    if inspect.isclass(target):
        if not issubclass(target, Plugin):
            raise TypeError(f"{target.__qualname__} is not a subclass of warden.Plugin")
        return target
    module = target
    candidates = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, Plugin)
        and value is not Plugin
        and (value.__module__ == module.__name__ or value.__module__.startswith(module.__name__ + "."))
    ]
    if class_name is not None:
        for value in candidates:
            if value.__qualname__ == class_name:
                return value
        raise LookupError(f"module {module.__name__} defines no Plugin subclass named {class_name!r}")
    if len(candidates) != 1:
        names = ", ".join(sorted(c.__qualname__ for c in candidates)) or "none"
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

    WitWorld.plugin_class = spec.cls
    WitWorld.identity = spec.identity
    return WitWorld
