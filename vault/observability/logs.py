"""Structured logs: JSON in production (VAULT_LOG_JSON), readable lines in development.

Every line goes through one formatter, the vault's own and third-party libraries' alike,
and that formatter is where health data is kept out:

- exceptions are rendered as their types and code locations only: an exception's message
  (a database error's statement parameters, a validation error quoting its input) may
  carry health data or identifiers;
- anything shaped like a bearer token, a JWT or an INS/NIR is masked in the final line,
  whatever logged it;
- libraries that log request URLs, SQL parameters or bodies at INFO/DEBUG are held at
  WARNING, whatever the configured level.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Loggers that would write URLs (with their query strings), SQL parameters or request
# bodies if allowed below WARNING.
QUIET_LOGGERS = (
    "sqlalchemy",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "urllib3",
    "botocore",
    "boto3",
    "s3transfer",
    "multipart",
    "python_multipart",
    "uvicorn.access",
    "asyncio",
)

_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Compact JWS/JWE: base64url of '{"' is 'eyJ'.
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*"), "[token]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    # NIR / INS: sex, year, month, department (2A/2B for Corsica), commune, order, key.
    (
        re.compile(r"(?<![0-9A-Za-z])[1-478][0-9]{4}(?:[0-9]{2}|2[ABab])[0-9]{8}(?![0-9A-Za-z])"),
        "[nir]",
    ),
)

_HANDLER_MARK = "_vault_handler"


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def describe_exception(error: BaseException) -> str:
    """``Type at file:line in function; ...``, following causes, never the message."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = ", ".join(
            f"{_short(frame.filename)}:{frame.lineno} in {frame.name}"
            for frame in traceback.extract_tb(current.__traceback__)
        )
        name = f"{type(current).__module__}.{type(current).__qualname__}"
        parts.append(f"{name} at {frames}" if frames else name)
        current = current.__cause__ or current.__context__
    return "; caused by ".join(parts)


def _short(filename: str) -> str:
    path = Path(filename)
    return "/".join(path.parts[-2:])


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        found = exc_info[1]
        return found if isinstance(found, BaseException) else None
    if exc_info:
        return sys.exc_info()[1]
    return None


def exception_types_only(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    error = _exception_of(event_dict.pop("exc_info", None))
    if error is not None:
        event_dict["exception"] = describe_exception(error)
    elif isinstance(event_dict.get("exception"), str):
        # A traceback rendered upstream ends with "Type: message"; keep the type only.
        lines = str(event_dict["exception"]).strip().splitlines() or [""]
        event_dict["exception"] = lines[-1].split(":", 1)[0]
    return event_dict


class _Redacting:
    """Wraps the final renderer so that masking sees exactly what is written."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(
        self, logger: WrappedLogger, method: str, event_dict: EventDict
    ) -> str | bytes | bytearray | Mapping[str, Any] | tuple[Any, ...]:
        rendered = self._renderer(logger, method, event_dict)
        if isinstance(rendered, str):
            return redact(rendered)
        return rendered


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    *, json_output: bool, level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Route every logger (the vault's, uvicorn's, libraries') through one formatter.

    Safe to call again: it replaces the handler it installed before and leaves any other
    handler (a test harness's, say) alone.
    """
    output = stream or sys.stderr
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=_is_terminal(output))
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exception_types_only,
            _Redacting(renderer),
        ],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_MARK, False):
            root.removeHandler(existing)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn's own handlers would bypass the formatter above.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True

    structlog.configure(
        processors=[
            # First: an event below the level (every request's line at WARNING) is dropped
            # before the timestamp and the rest are made for it, not after (stdlib would
            # drop it by the same test, its logger's level).
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


def logging_configured() -> bool:
    return any(getattr(handler, _HANDLER_MARK, False) for handler in logging.getLogger().handlers)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
