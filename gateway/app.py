"""Composition root: `create_app(settings)` builds the FastAPI app (API, docs, web UI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from gateway import errors
from gateway.api import public_router, router
from gateway.api_library import router as library_router
from gateway.api_maintenance import router as maintenance_router
from gateway.clients import ServiceClients
from gateway.config import GatewaySettings
from gateway.image_proxy import router as image_router
from gateway.security import AuthGuard, FailedAuthLimiter, RequestIdMiddleware
from service_kit.logs import get_logger

log = get_logger("gateway.app")

DESCRIPTION = """HTTP front door of the model manager: every user-facing call of the registry, the CivitAI
service and the inference service. Streams are server-sent events. Errors are
`{"error": {"code", "status", "message", "details"}}` (AIP-193) with the services' `ErrorInfo`.
When `MODELMGR_API_KEY` is set, send it as `x-api-key` or `Authorization: Bearer` (every route but
`/api/v1/livez`); repeated failures from one address get 429 with `Retry-After`. Bodies are at most
`--max-body-bytes` (uploads: `--max-upload-bytes`); larger ones get 413."""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients = ServiceClients.connect(settings)
        app.state.clients = clients
        log.info("gateway.started", registry=settings.registry, civitai=settings.civitai,
                 inference=settings.inference, auth=bool(settings.api_key))
        try:
            yield
        finally:
            await clients.close()

    # FastAPIOffline serves Swagger UI from bundled files: FastAPI's default /docs loads them from a
    # CDN and stays blank on a self-hosted machine without internet.
    app = FastAPIOffline(
        title="Model Manager API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        static_url="/docs-assets",
    )
    app.state.settings = settings
    errors.install(app)
    app.include_router(public_router)  # before `router`, whose last route catches every /api/v1 path
    app.include_router(library_router)
    app.include_router(maintenance_router)
    app.include_router(image_router)
    app.include_router(router)
    # Inside CORS (preflights carry no key; refusals still get CORS headers), outside everything that
    # reads a body. Middleware added later wraps the earlier ones.
    app.state.auth_limiter = FailedAuthLimiter(settings.auth_fail_limit, settings.auth_fail_window)
    app.add_middleware(AuthGuard, settings=settings, limiter=app.state.auth_limiter)
    # Added even with no origins: Gradio's UI otherwise installs its own CORS, which reflects any
    # Origin (with credentials) when the gateway is reached by a name other than localhost.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["x-request-id"],
    )
    app.add_middleware(RequestIdMiddleware)
    if settings.ui:
        from gateway.ui import mount_ui

        mount_ui(app, settings)
    return app
