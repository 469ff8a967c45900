"""structlog set-up shared by every service: JSON lines, request ids, no secrets.

`configure_logging` is called once by each entry point. The request id lives
in a context variable bound by the server interceptor (from the caller's
`x-request-id` metadata, or a new one) and is added to every log line of the
call; outgoing gRPC calls pass it on (see `service_kit.client`).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REQUEST_ID_HEADER = "x-request-id"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Keys whose values never reach a log line, whatever the caller passes.
_SECRET_KEYS = re.compile(r"(token|authorization|api[_-]?key|password|secret|cookie)", re.IGNORECASE)
# Secret values registered at start-up (e.g. CIVITAI_TOKEN), scrubbed from any string.
_secret_values: set[str] = set()
# A `token=...` query parameter inside a URL.
_TOKEN_IN_URL = re.compile(r"([?&](?:token|api_key|apikey)=)[^&\s\"']+", re.IGNORECASE)

REDACTED = "[REDACTED]"


def register_secret(value: str | None) -> None:
    """Scrub this exact value from every later log line (ignored when short or empty)."""
    if value and len(value) >= 6:
        _secret_values.add(value)


def redact_text(text: str) -> str:
    """Remove registered secrets and URL tokens from a string."""
    for secret in _secret_values:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN_IN_URL.sub(r"\1" + REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _add_request_id(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    rid = request_id_var.get()
    if rid and "request_id" not in event_dict:
        event_dict["request_id"] = rid
    return event_dict


def new_request_id() -> str:
    return uuid.uuid4().hex


def configure_logging(
    service: str,
    *,
    level: str = "INFO",
    json: bool = True,
    secrets: Iterable[str | None] = (),
    stream: Any = None,
) -> None:
    """Route structlog and stdlib logging to one stream as JSON (or console) lines."""
    for secret in secrets:
        register_secret(secret)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that log through stdlib logging go to the same stream.
    logging.basicConfig(stream=stream or sys.stderr, level=logging.WARNING, force=True)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger
