"""Process-wide logging: plain text for people, one JSON object per line for collectors."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from pythonhosted.errortext import first_line, without_credentials

LOG_JSON_ENV = "PYTHONHOSTED_LOG_JSON"

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; ``extra=`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


# Libraries that log a warning about what they then raise: clickhouse-connect's driver, and
# urllib3's retry beneath it. The error raised is the line an operator needs; their warnings
# were two more lines above it (a failed command's one line was three). A filter on the
# handler, not the loggers' levels: clickhouse-connect sets urllib3's level when imported.
_WARN_THEN_RAISE = ("urllib3", "clickhouse_connect")


def _not_warned_then_raised(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or record.name.split(".")[0] not in _WARN_THEN_RAISE


def configure_logging(*, json: bool, level: str = "INFO") -> None:
    """Send every logger's records to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        handler.addFilter(_not_warned_then_raised)


_status_log = logging.getLogger("pythonhosted.cli")


def logging_json() -> bool:
    """Whether :func:`configure_logging` chose JSON for this process."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def status(message: str, level: int = logging.INFO) -> None:
    """A command's status line on stderr (a server's banner, a job's summary, a note).

    People get the line as it is; under ``--log-json`` it is a log record, one JSON object
    like every other line on stderr, where a plain line broke log shippers that parse each
    line as JSON.
    """
    if logging_json():
        _status_log.log(level, message)
    else:
        print(message, file=sys.stderr, flush=True)


def json_wanted(flag: bool | None = None) -> bool:
    """Whether JSON logs were asked for, also before the settings could be read (a bad
    setting): the ``--log-json`` flag when given, else ``PYTHONHOSTED_LOG_JSON`` read as the
    settings read a boolean."""
    if logging_json():
        return True
    if flag is not None:
        return flag
    try:
        return TypeAdapter(bool).validate_python(os.environ.get(LOG_JSON_ENV, "false"))
    except ValidationError:
        return False


def error_line(message: str, *, json: bool) -> None:
    """The one line an error that ends a command leaves on stderr: ``Error: …`` for people,
    an ``error`` record under ``--log-json`` (where the plain line was the one line of a
    failed start a log shipper could not parse). A URL in it is shown without its
    credentials, whichever check found the mistake."""
    message = without_credentials(message)
    if json:
        if not logging_json():  # the error came before the settings that configure logging
            configure_logging(json=True)
        _status_log.error(message)
    else:
        print(f"Error: {message}", file=sys.stderr, flush=True)


def log_stray_errors() -> None:
    """Log what no command can catch as one record: an exception that ends a thread, or one
    Python can only ignore (in ``__del__``, a finalizer, a callback at exit).

    Python prints their tracebacks straight to stderr (``Exception in thread …``,
    ``Exception ignored in …``), a dozen lines among a command's one line or a server's
    records; the traceback is logged at DEBUG level.
    """

    def thread_ended(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "a thread"
        _stray(f"{name} ended", args.exc_type, args.exc_value, args.exc_traceback)

    def ignored(args: Any) -> None:  # sys.UnraisableHookArgs: a type only at runtime
        where = args.err_msg or f"Exception ignored in {args.object!r}"
        _stray(where, args.exc_type, args.exc_value, args.exc_traceback)

    threading.excepthook = thread_ended
    sys.unraisablehook = ignored


def _stray(where: str, kind: type[BaseException], exc: BaseException | None, tb: Any) -> None:
    text = first_line(exc) if exc is not None else kind.__name__
    _stray_log.error("%s: %s: %s", where, kind.__name__, text)
    _stray_log.debug("the traceback", exc_info=(kind, exc or kind(), tb))


_stray_log = logging.getLogger("pythonhosted.stray")
