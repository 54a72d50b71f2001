"""Logging into the host's log, tagged with the plugin's identity::

    from warden import log
    log.info("cache warmed")

Anything the plugin prints to stdout or stderr goes to the host log as well.
"""

from . import _host

__all__ = ["trace", "debug", "info", "warn", "error", "get_logger"]


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


class Logger:
    """A named logger with the methods of Python's `logging` and
    structlog's loggers (`logger.info("...")`), writing to the host log.
    Keyword arguments are appended as `key=value`."""

    def __init__(self, name=None):
        self.name = name

    def _write(self, level, message, args, fields):
        text = str(message)
        if args:
            try:
                text = text % args
            except (TypeError, ValueError):
                text = " ".join([text] + [str(a) for a in args])
        if fields:
            text += " " + " ".join(f"{k}={v!r}" for k, v in fields.items())
        _log(level, text)

    def debug(self, message, *args, **fields):
        self._write("DEBUG", message, args, fields)

    def info(self, message, *args, **fields):
        self._write("INFO", message, args, fields)

    def warning(self, message, *args, **fields):
        self._write("WARN", message, args, fields)

    warn = warning

    def error(self, message, *args, **fields):
        self._write("ERROR", message, args, fields)

    def exception(self, message, *args, **fields):
        self._write("ERROR", message, args, fields)

    critical = error


def get_logger(name=None):
    """A logger for `name` (structlog's and `logging`'s `get_logger` /
    `getLogger`, for plugins moved from Slack Machine)."""
    return Logger(name)


getLogger = get_logger
