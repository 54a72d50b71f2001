"""Logging into the host's log, tagged with the plugin's identity::

    from warden import log
    log.info("cache warmed")

Anything the plugin prints to stdout or stderr goes to the host log as well.
"""

from . import _host

__all__ = ["trace", "debug", "info", "warn", "error"]


def _log(level, message):
    logging = _host.require(_host.logging, "logging")
    logging.log(getattr(logging.Level, level), str(message))


def trace(message):
    """Logs `message` at the trace level."""
    _log("TRACE", message)


def debug(message):
    """Logs `message` at the debug level."""
    _log("DEBUG", message)


def info(message):
    """Logs `message` at the info level."""
    _log("INFO", message)


def warn(message):
    """Logs `message` at the warn level."""
    _log("WARN", message)


def error(message):
    """Logs `message` at the error level."""
    _log("ERROR", message)
