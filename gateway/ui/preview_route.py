"""The gallery's thumbnails for a signed-in UI session: `GET /ui-previews/{filename}`.

A browser showing the UI holds Gradio's login cookie, not the API key, so an `<img>` cannot load the
API's `/api/v1/models/{filename}/preview`. This route is that one (the same handler: ETag = the
thumbnail's sha256, private Cache-Control, 304, the NSFW limit) for a client Gradio has signed in (its
access-token cookie is one of the UI's live logins; with no API key the UI is open and so is this).

It serves only what the registry's GetPreview returns for a model key; it never names a file on
disk, so the guard's per-login file ownership is untouched. The route is added before the UI's
mount at "/", which would otherwise answer every path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response
from starlette.routing import Mount

from gateway.api import MAX_TEXT_CHARS, Filename
from gateway.api_library import get_preview
from gateway.config import GatewaySettings
from gateway.errors import ApiError

PREVIEW_ROUTE = "/ui-previews"
LOGIN_REQUIRED = "sign in to the web UI first"


def preview_url(filename: str, sha256: str) -> str:
    """A thumbnail's URL, relative (the UI may sit under a proxy's prefix); `v` changes with the image,
    so a replaced preview is a new URL while an unchanged one stays in the browser's cache."""
    from urllib.parse import quote

    return f"{PREVIEW_ROUTE.lstrip('/')}/{quote(filename, safe='')}?v={sha256[:16]}"


def gradio_app_of(app: FastAPI) -> Any:
    """The Gradio App mounted in `app` (None before mount_gradio_app ran)."""
    from gradio.routes import App

    return next((r.app for r in app.routes if isinstance(r, Mount) and isinstance(r.app, App)), None)


def signed_in(gradio_app: Any, request: Request) -> bool:
    """Whether the request carries the cookie of a live Gradio login (as Gradio's own /user checks it)."""
    if gradio_app is None:
        return False
    cookie_id = gradio_app.cookie_id
    token = (request.cookies.get(f"access-token-{cookie_id}")
             or request.cookies.get(f"access-token-unsecure-{cookie_id}"))
    return token is not None and token in gradio_app.tokens


def ui_session_check(app: FastAPI, settings: GatewaySettings) -> Callable[[Request], bool]:
    """Whether a request comes from a signed-in UI session (always, with no API key: the UI is open).
    Gradio's App is looked up lazily: it exists only once the UI is mounted."""
    if not settings.api_key:
        return lambda _request: True
    found: list[Any] = []

    def ui_app() -> Any:
        if not found and (gradio_app := gradio_app_of(app)) is not None:
            found.append(gradio_app)
        return found[0] if found else None

    return lambda request: signed_in(ui_app(), request)


def install_preview_route(app: FastAPI, settings: GatewaySettings) -> None:
    """Add the route; call before mounting the UI."""
    allowed = ui_session_check(app, settings)

    async def ui_preview(
        filename: Filename,
        request: Request,
        if_none_match: Annotated[str | None, Header(max_length=MAX_TEXT_CHARS)] = None,
    ) -> Response:
        if not allowed(request):
            raise ApiError.local(401, LOGIN_REQUIRED, "UI_LOGIN_REQUIRED")
        return await get_preview(filename, request.app.state.clients, if_none_match)

    app.add_api_route(f"{PREVIEW_ROUTE}/{{filename}}", ui_preview, methods=["GET"], include_in_schema=False,
                      response_class=Response)


__all__ = ["PREVIEW_ROUTE", "install_preview_route", "preview_url", "signed_in", "ui_session_check"]
