#!/usr/bin/env python3
"""Builds a Python Warden plugin into a WebAssembly component.

    python3 guest-sdk/python/build.py PLUGIN [-o OUT.wasm] [--class NAME] [--wit DIR]

PLUGIN is the plugin's module: a `.py` file, or a package directory. The
module must define one subclass of `warden.Plugin` (`--class` picks one
when it defines several); its identity is `MODULE.ClassName`, so
`python_storage.py` defining `StoragePlugin` is the plugin
`python_storage.StoragePlugin`. A package's plugin class may be in any of
its modules. A file inside a package (a directory with `__init__.py`, as in
Slack Machine's layout `plugins/__init__.py`, `plugins/hitchhikers.py`) is
built with its package, under its dotted name: `plugins/hitchhikers.py`
defining `UltimateQuestionPlugin` is `plugins.hitchhikers.UltimateQuestionPlugin`.
The module is imported with this Python first, so that a missing class or
an unusable route is reported before the componentize step.

The component embeds the module, the `warden` SDK, whatever they import
(pure-Python packages of the active virtual environment included) and a
Python interpreter, and is written to OUT (default: MODULE.wasm in the
current directory) in one step, so it can be built straight into a plugins
directory that Warden is watching.

The build needs componentize-py 0.25.1 (`pip install componentize-py==0.25.1`).
When neither this Python nor the `componentize-py` command on the PATH has
that version, the build installs it with pip into a directory of its own,
~/.cache/warden-python/componentize-py-0.25.1 (under $XDG_CACHE_HOME when
set), and uses it from there; nothing else is installed. If that install
fails, the build exits with status 3.
"""

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile

COMPONENTIZE_PY = "0.25.1"
WORLD = "plugin"
ENTRY = "warden_component_entry"
# The exit status when componentize-py is missing and cannot be installed.
INSTALL_FAILED = 3

SDK_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WIT = os.path.normpath(os.path.join(SDK_DIR, "..", "..", "wit"))

RUN_COMPONENTIZE_PY = (
    "import sys; from componentize_py import script; "
    "sys.argv[0] = 'componentize-py'; sys.exit(script())"
)

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.wasm", ".*")


def fail(message):
    print(f"build.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def installed_version():
    try:
        return importlib.metadata.version("componentize-py")
    except importlib.metadata.PackageNotFoundError:
        return None


def private_dir():
    """Where the build installs componentize-py when it is missing."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "warden-python", f"componentize-py-{COMPONENTIZE_PY}")


def run_from(directory):
    """The command that runs componentize-py installed in `directory`."""
    code = f"import sys; sys.path.insert(0, {directory!r}); {RUN_COMPONENTIZE_PY}"
    return [sys.executable, "-c", code]


def componentize_py():
    """The command that runs componentize-py 0.25.1: this Python's, the
    `componentize-py` command's, or one installed for Warden's builds only
    (in ~/.cache/warden-python) when neither is that version."""
    version = installed_version()
    if version == COMPONENTIZE_PY:
        return [sys.executable, "-c", RUN_COMPONENTIZE_PY]
    command = shutil.which("componentize-py")
    if command is not None:
        found = subprocess.run([command, "--version"], capture_output=True, text=True)
        words = found.stdout.split()
        if found.returncode == 0 and words and words[-1] == COMPONENTIZE_PY:
            return [command]
        version = version or (words[-1] if words else "of an unknown version")
    private = private_dir()
    if os.path.isdir(os.path.join(private, "componentize_py")):
        return run_from(private)
    why = f"componentize-py {version} is installed" if version else "componentize-py is missing"
    print(
        f"build.py: {why}; installing componentize-py=={COMPONENTIZE_PY} into {private}",
        file=sys.stderr,
    )
    partial = f"{private}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    pip = [
        sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
        "--target", partial, f"componentize-py=={COMPONENTIZE_PY}",
    ]
    if subprocess.run(pip).returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        print(
            f"build.py: error: could not install componentize-py {COMPONENTIZE_PY} with pip; "
            f"install it (pip install componentize-py=={COMPONENTIZE_PY}) and build again",
            file=sys.stderr,
        )
        sys.exit(INSTALL_FAILED)
    os.makedirs(os.path.dirname(private), exist_ok=True)
    try:
        os.replace(partial, private)
    except OSError:
        # Another build installed it meanwhile.
        shutil.rmtree(partial, ignore_errors=True)
        if not os.path.isdir(os.path.join(private, "componentize_py")):
            raise
    return run_from(private)


CHECK = """
import importlib, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import warden
world = warden.component(importlib.import_module(sys.argv[3]), sys.argv[4] or None)
print(world.identity)
"""


def check(top, package, module, class_name):
    """Imports the plugin with this Python and finds its class, so that a
    missing class, an unusable route or a Python error in the module is
    reported now rather than after the slow componentize step."""
    with tempfile.TemporaryDirectory(prefix="warden-check-") as work:
        if os.path.isdir(top):
            shutil.copytree(top, os.path.join(work, package), ignore=IGNORED)
        else:
            shutil.copyfile(top, os.path.join(work, f"{package}.py"))
        found = subprocess.run(
            [sys.executable, "-B", "-c", CHECK, SDK_DIR, work, module, class_name or ""],
            capture_output=True,
            text=True,
        )
    if found.returncode != 0:
        lines = found.stderr.strip().splitlines()
        fail(f"the plugin {module} cannot be built: {lines[-1] if lines else 'it failed to import'}\n"
             + found.stderr)
    print(f"build.py: building {found.stdout.strip()}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(
        prog="build.py",
        description="Builds a Python Warden plugin into a WebAssembly component.",
    )
    parser.add_argument("plugin", help="the plugin's module: a .py file or a package directory")
    parser.add_argument("-o", "--output", help="the component to write (default: MODULE.wasm)")
    parser.add_argument(
        "--class",
        dest="class_name",
        help="the plugin class, when the module defines several Plugin subclasses",
    )
    parser.add_argument(
        "--wit", default=DEFAULT_WIT, help=f"the directory of Warden's WIT files (default: {DEFAULT_WIT})"
    )
    args = parser.parse_args()

    source = os.path.abspath(args.plugin.rstrip("/\\"))
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "__init__.py")):
            fail(f"{args.plugin} is a directory without __init__.py, not a Python package")
        leaf = os.path.basename(source)
        parent = os.path.dirname(source)
    elif os.path.isfile(source) and source.endswith(".py"):
        leaf = os.path.basename(source)[: -len(".py")]
        parent = os.path.dirname(source)
    else:
        fail(f"{args.plugin} is neither a .py file nor a package directory")
    # A module inside a package (Slack Machine's `plugins/hitchhikers.py`
    # beside `plugins/__init__.py`) is built as part of its package, under
    # its dotted name: `plugins.hitchhikers`.
    parts = [leaf]
    top = source
    while os.path.isfile(os.path.join(parent, "__init__.py")):
        parts.insert(0, os.path.basename(parent))
        top = parent
        parent = os.path.dirname(parent)
    module = ".".join(parts)
    for part in parts:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            fail(f"{part!r} in {module!r} cannot be part of a module name: it must be a Python identifier")
    if parts[0] in (ENTRY, "warden", WORLD):
        fail(
            f"{parts[0]!r} cannot be the plugin's module name: it must be a Python identifier "
            f"other than {ENTRY!r}, 'warden' and {WORLD!r}"
        )
    if args.class_name is not None and not re.fullmatch(
        r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", args.class_name
    ):
        fail(f"--class {args.class_name!r} is not a class name")
    if not os.path.isfile(os.path.join(args.wit, "plugin.wit")):
        fail(f"{args.wit} does not hold Warden's plugin.wit; pass --wit DIR")
    output = os.path.abspath(args.output or f"{parts[-1]}.wasm")
    check(top, parts[0], module, args.class_name)

    command = componentize_py()
    with tempfile.TemporaryDirectory(prefix="warden-python-") as work:
        path = os.path.join(work, "path")
        shutil.copytree(os.path.join(SDK_DIR, "warden"), os.path.join(path, "warden"), ignore=IGNORED)
        if os.path.isdir(top):
            shutil.copytree(top, os.path.join(path, parts[0]), ignore=IGNORED)
        else:
            shutil.copyfile(top, os.path.join(path, f"{parts[0]}.py"))
        with open(os.path.join(path, f"{ENTRY}.py"), "w", encoding="utf-8") as entry:
            entry.write(
                "import importlib\n"
                "import warden\n"
                f"WitWorld = warden.component(importlib.import_module({module!r}), {args.class_name!r})\n"
            )
        os.makedirs(os.path.dirname(output), exist_ok=True)
        partial = f"{output}.partial"
        built = subprocess.run(
            command
            + ["-q", "-d", args.wit, "-w", WORLD, "componentize", ENTRY, "-p", path, "-o", partial],
            # A Python error in the plugin is the report; componentize-py's
            # own stack trace would bury it.
            env=dict(os.environ, RUST_LIB_BACKTRACE="0"),
        )
        if built.returncode != 0:
            try:
                os.remove(partial)
            except FileNotFoundError:
                pass
            fail(f"componentize-py failed to build {args.plugin} (see above)")
        os.replace(partial, output)
    print(f"built {output}")


if __name__ == "__main__":
    main()
