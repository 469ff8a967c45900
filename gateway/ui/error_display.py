"""The UI's one error path: a failed call becomes readable text in the handler's own outputs.

Every handler is decorated with `shows_errors(fallback)`; `fallback(message)` builds what its outputs
show on failure (usually `rendering.error_html`). A service error (ApiError), a raw gRPC error, a
service_kit error (e.g. from the paging helper) and a missing input (`NeedsInput`) all take this path;
anything else is a bug and reaches Gradio (a toast naming the exception, never a traceback).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import grpc

from gateway.errors import ApiError
from service_kit.errors import ServiceError

F = TypeVar("F", bound=Callable[..., Any])


class NeedsInput(Exception):
    """The user has not given what the action needs ("Choose a file to upload."); shown as it is."""


SHOWN = (ApiError, grpc.aio.AioRpcError, ServiceError, NeedsInput)


def describe_error(exc: BaseException) -> str:
    """One readable line for any failure a handler meets."""
    if isinstance(exc, ApiError):
        reason = exc.reason
        return f"{exc.message}" + (f" ({reason})" if reason else "")
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.details() or exc.code().name} ({exc.code().name})"
    if isinstance(exc, ServiceError):
        return f"{exc.message} ({exc.reason})"
    if isinstance(exc, NeedsInput):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def shows_errors(fallback: Callable[[str], Any]) -> Callable[[F], F]:
    """Decorate an async handler (a coroutine or an async generator): on a SHOWN error it returns
    (or yields, as its last update) `fallback(describe_error(exc))`.

    The wrapper keeps the handler's name (Gradio's API name) and signature (Gradio reads it for
    gr.SelectData and the like)."""

    def decorate(fn: F) -> F:
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                try:
                    # aclosing: a closed tab closes the handler's own generator at once, so its
                    # upstream stream is cancelled then (not whenever it is garbage collected).
                    async with aclosing(fn(*args, **kwargs)) as updates:
                        async for update in updates:
                            yield update
                except SHOWN as exc:
                    yield fallback(describe_error(exc))

            return stream  # type: ignore[return-value]

        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"shows_errors wraps async handlers; {fn.__qualname__} is not")

        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except SHOWN as exc:
                return fallback(describe_error(exc))

        return call  # type: ignore[return-value]

    return decorate
