"""The HTTP API of an existing library (issue 12): library roots, import jobs, refresh from CivitAI, previews.

Same conventions as gateway.api (proto JSON in and out, SSE for the import watch, errors per
gateway.errors); the app includes this router before gateway.api's, whose last route catches every
other /api/v1 path. Routes hold no logic beyond the mapping, except the preview's caching headers and
its NSFW limit (--preview-nsfw-max), which are the gateway's.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse

from gateway.api import (
    MAX_TEXT_CHARS,
    SSE_DOC,
    STREAM_TIMEOUT,
    Clients,
    Filename,
    JobId,
    JsonBody,
    OptionalJsonBody,
    _etag_matches,
)
from gateway.clients import proto_json, to_dict
from gateway.errors import ApiError
from gateway.protojson import json_object, parse
from gateway.security import require_api_key
from gateway.sse import sse_response
from modelmanager.v1 import registry_pb2

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_key)])

MAX_ROOT_ID_CHARS = 128
RootId = Annotated[str, Path(max_length=MAX_ROOT_ID_CHARS)]
# `mode` may be given short, as the CLI spells it, or as the proto's enum name.
IMPORT_MODES = {"in_place": "IMPORT_MODE_IN_PLACE", "link": "IMPORT_MODE_LINK", "copy": "IMPORT_MODE_COPY"}
# Refreshing asks CivitAI about every file given (up to 1,000), in batches of 100.
REFRESH_DEADLINE = 600.0
# A preview changes when it is refreshed from CivitAI, under the same URL: a browser keeps it a while and
# then revalidates by ETag; only for this user (the route is behind the API key).
PREVIEW_CACHE = "private, max-age=300"
# What the registry stores (it re-encodes every preview); anything else is served as opaque bytes.
PREVIEW_TYPES = frozenset({"image/webp", "image/png", "image/jpeg"})
PREVIEW_DOC = {"description": "The model's preview thumbnail (WebP as the registry stores it)",
               "content": {"image/webp": {}}}


# ---------------------------------------------------------------- library roots


@router.get("/library-roots", tags=["library"], summary="Library roots indexed in place (ListLibraryRoots)")
async def list_library_roots(clients: Clients) -> JSONResponse:
    req = registry_pb2.ListLibraryRootsRequest()
    return proto_json(await clients.unary("registry", clients.registry.ListLibraryRoots, req))


@router.post("/library-roots", tags=["library"], status_code=201,
             summary="Add a library root (AddLibraryRoot); body {path, write_back?}. The path must be under one "
             "of the registry's --library-allow folders (else 403 ROOT_NOT_ALLOWED)")
async def add_library_root(clients: Clients, body: JsonBody) -> JSONResponse:
    req = parse(body, registry_pb2.AddLibraryRootRequest())
    resp = await clients.unary("registry", clients.registry.AddLibraryRoot, req)
    return proto_json(resp.root, 201)


@router.delete("/library-roots/{root_id}", tags=["library"],
               summary="Remove a root and its entries from the index; its files stay (RemoveLibraryRoot)")
async def remove_library_root(root_id: RootId, clients: Clients) -> JSONResponse:
    req = registry_pb2.RemoveLibraryRootRequest(id=root_id)
    return proto_json(await clients.unary("registry", clients.registry.RemoveLibraryRoot, req))


# ---------------------------------------------------------------- import jobs


def _start_import_request(body: Any) -> registry_pb2.StartImportRequest:
    body = dict(json_object(body))
    mode = body.get("mode")
    if isinstance(mode, str):
        body["mode"] = IMPORT_MODES.get(mode.lower(), mode)
    return parse(body, registry_pb2.StartImportRequest())


@router.post("/imports", tags=["library"], status_code=201,
             summary="Start an import (StartImport); body {path | root_id, mode: in_place|link|copy, no_identify, "
             "write_back, force_identify}. The job outlives the request; 409 IMPORT_IN_PROGRESS names the running "
             "one in job_id")
async def start_import(clients: Clients, body: JsonBody) -> JSONResponse:
    resp = await clients.unary("registry", clients.registry.StartImport, _start_import_request(body))
    return proto_json(resp.job, 201)


@router.get("/imports", tags=["library"], summary="Import jobs, newest first (ListImports)")
async def list_imports(clients: Clients) -> JSONResponse:
    req = registry_pb2.ListImportsRequest()
    return proto_json(await clients.unary("registry", clients.registry.ListImports, req))


@router.get("/imports/{job_id}", tags=["library"], summary="One import job (GetImport)")
async def get_import(job_id: JobId, clients: Clients) -> JSONResponse:
    resp = await clients.unary("registry", clients.registry.GetImport, registry_pb2.GetImportRequest(id=job_id))
    return proto_json(resp.job)


@router.post("/imports/{job_id}/cancel", tags=["library"], summary="Cancel an import job (CancelImport)")
async def cancel_import(job_id: JobId, clients: Clients) -> JSONResponse:
    req = registry_pb2.CancelImportRequest(id=job_id)
    resp = await clients.unary("registry", clients.registry.CancelImport, req)
    return proto_json(resp.job)


def _import_event(msg: registry_pb2.WatchImportResponse) -> tuple[str, str | None, Any]:
    return "job", None, to_dict(msg.job)


@router.get("/imports/{job_id}/events", tags=["library"], responses={200: SSE_DOC},
            summary="Watch an import job as SSE (`event: job` per change, `end` when it is over). "
            "Disconnecting does not cancel the job")
async def watch_import(job_id: JobId, clients: Clients) -> EventSourceResponse:
    call = clients.registry.WatchImport(registry_pb2.WatchImportRequest(id=job_id), timeout=STREAM_TIMEOUT)
    return await sse_response(clients, "registry", call, _import_event)


# ---------------------------------------------------------------- CivitAI refresh and previews


@router.post("/models/refresh-civitai", tags=["models"],
             summary="Look models up on CivitAI by hash again (RefreshFromCivitai); body {filenames: [...], force?}. "
             "Fields the user edited are kept")
async def refresh_from_civitai(clients: Clients, body: OptionalJsonBody = None) -> JSONResponse:
    req = parse({} if body is None else body, registry_pb2.RefreshFromCivitaiRequest())
    return proto_json(await clients.unary("registry", clients.registry.RefreshFromCivitai, req,
                                          deadline=REFRESH_DEADLINE))


def highest_level(nsfw_level: int) -> int:
    """CivitAI's levels are bit flags; a combination is rated by its highest one (0 stays 0: unknown)."""
    return 1 << (nsfw_level.bit_length() - 1) if nsfw_level > 0 else 0


@router.get("/models/{filename}/preview", tags=["models"], response_class=Response, responses={200: PREVIEW_DOC},
            summary="A model's preview thumbnail (GetPreview); ETag is its sha256, 304 on If-None-Match. "
            "Previews rated above --preview-nsfw-max are 404 PREVIEW_HIDDEN")
async def get_preview(
    filename: Filename,
    clients: Clients,
    if_none_match: Annotated[str | None, Header(max_length=MAX_TEXT_CHARS)] = None,
) -> Response:
    # Always asked (no image-less GetPreview): a preview removed, replaced or now hidden is not a 304.
    resp = await clients.unary("registry", clients.registry.GetPreview, registry_pb2.GetPreviewRequest(filename=filename))
    limit = clients.settings.preview_nsfw_max
    level = highest_level(resp.preview.nsfw_level)
    if level > limit:
        raise ApiError.local(404, f"the preview of {filename} is rated above this gateway's NSFW limit",
                             "PREVIEW_HIDDEN", {"nsfw_level": str(level), "limit": str(limit)})
    etag = f'"{resp.preview.sha256 or hashlib.sha256(resp.image).hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": PREVIEW_CACHE, "X-Content-Type-Options": "nosniff"}
    if if_none_match is not None and _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    media_type = resp.preview.content_type if resp.preview.content_type in PREVIEW_TYPES else "application/octet-stream"
    return Response(resp.image, media_type=media_type, headers=headers)
