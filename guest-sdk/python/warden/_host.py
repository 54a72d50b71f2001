"""The host's imports, as componentize-py generates them for the
`warden:plugin/plugin` world.

They exist only inside a component built with `build.py`; outside one (for
example in a plugin's own unit tests) every call raises `RuntimeError`, or
uses whatever `install` put in their place.
"""

try:  # inside a component
    from componentize_py_types import Err
    from wit_world.imports import chat, logging, storage, store, types
except ImportError:  # plain CPython
    chat = logging = storage = store = types = None

    class Err(Exception):  # noqa: N818 - the name componentize-py uses
        """Stands in for `componentize_py_types.Err` outside a component."""

        def __init__(self, value):
            super().__init__(value)
            self.value = value


def require(module, name):
    if module is None:
        raise RuntimeError(
            f"warden: the host's {name} interface is only available inside a "
            "component built with guest-sdk/python/build.py"
        )
    return module


def install(*, chat=None, logging=None, storage=None, store=None, types=None, err=None):
    """Replaces the host's interfaces, for tests that run a plugin on plain
    CPython. Each argument is a module-like object with the functions of
    the WIT interface of that name (`store` is `wasi:config/store`, the
    settings); `err` is the exception type their failures raise (with the
    WIT error in `.value`)."""
    g = globals()
    for name, value in (
        ("chat", chat),
        ("logging", logging),
        ("storage", storage),
        ("store", store),
        ("types", types),
        ("Err", err),
    ):
        if value is not None:
            g[name] = value
