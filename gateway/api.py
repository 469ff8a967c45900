"""The HTTP API under /api/v1: one route per user-facing RPC of the three services.

Bodies and responses are the protos' JSON (proto field names, every field
present); streams are server-sent events (`gateway.sse`); uploads are streamed
multipart (`gateway.upload`). Routes hold no logic beyond the mapping.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse
from google.protobuf import field_mask_pb2

from gateway.clients import ServiceClients, proto_json, to_dict
from gateway.errors import ApiError
from gateway.protojson import json_object, parse
from gateway.security import require_api_key
from gateway.sse import sse_response
from gateway.upload import model_type, stream_upload
from modelmanager.v1 import civitai_pb2, inference_pb2, model_pb2, registry_pb2

STREAM_TIMEOUT = 24 * 3600.0  # a watch or a generate may run long; the client's disconnect ends it sooner


def get_clients(request: Request) -> ServiceClients:
    clients: ServiceClients = request.app.state.clients  # app.state is untyped
    return clients


Clients = Annotated[ServiceClients, Depends(get_clients)]
CivitaiToken = Annotated[str | None, Header(alias="x-civitai-token", description="overrides CIVITAI_TOKEN")]
# Any JSON at all: `parse` refuses what is not an object with a 400 naming the problem (FastAPI's own
# dict validation lets some shapes through and 500s on others).
JsonBody = Annotated[Any, Body(json_schema_extra={"type": "object"})]
OptionalJsonBody = Annotated[Any, Body(json_schema_extra={"type": "object"})]

# Proto integer ranges, checked here (a 400 naming the parameter) rather than failing in the proto setter.
Int32 = Annotated[int, Query(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[int, Query(ge=-(2**63), le=2**63 - 1)]
# Path ids are bounded: a huge one is the client's mistake, and echoed in a service's error it overflows
# gRPC's metadata limit (which surfaced as 429 RESOURCE_EXHAUSTED).
MAX_FILENAME_CHARS = 255  # NAME_MAX of the filesystems the volume lives on
MAX_JOB_ID_CHARS = 128
Filename = Annotated[str, Path(max_length=MAX_FILENAME_CHARS)]
JobId = Annotated[str, Path(max_length=MAX_JOB_ID_CHARS)]
MAX_TEXT_CHARS = 4096
Text = Annotated[str, Query(max_length=MAX_TEXT_CHARS)]

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_key)])
# Without the key: only what a liveness probe needs, which says nothing about the services.
public_router = APIRouter(prefix="/api/v1")

# The routes return an EventSourceResponse themselves (after the first upstream message, so that an
# immediate failure is a real HTTP error); FastAPI's generator-SSE mode would commit to 200 first.
SSE_DOC = {
    "description": "Server-sent events: one event per upstream message, `event: error` with the error body "
    "if the stream fails midway, `event: end` when it finishes.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

# ---------------------------------------------------------------- health


@public_router.get("/livez", tags=["gateway"], summary="Liveness: the gateway answers (no key, no detail)")
async def livez() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/health", tags=["gateway"],
            summary="Each service's grpc.health.v1 status; 503 unless all are SERVING")
async def health(clients: Clients) -> JSONResponse:
    services = await clients.health()
    serving = all(v == "SERVING" for v in services.values())
    return JSONResponse({"status": "ok" if serving else "degraded", "services": services},
                        status_code=200 if serving else 503)


# ---------------------------------------------------------------- registry


@router.get("/models", tags=["models"], summary="List installed models (ListModels)")
async def list_models(
    clients: Clients,
    type: Annotated[str, Query(description="lora, checkpoint, embedding, vae or upscaler; empty for all",
                                  max_length=64)] = "",
    base_model: Text = "",
    query: Annotated[str, Query(description="free text over names, tags and trigger words",
                                max_length=MAX_TEXT_CHARS)] = "",
    page_size: Int32 = 0,
    page_token: Text = "",
    root_id: Annotated[str, Query(description='a library root\'s id; "volume" for the volume\'s own folders',
                                  max_length=MAX_TEXT_CHARS)] = "",
    folder: Annotated[str, Query(description="only this folder of a root (or loras/, checkpoints/) and below",
                                 max_length=MAX_TEXT_CHARS)] = "",
) -> JSONResponse:
    req = registry_pb2.ListModelsRequest(
        page_size=page_size, page_token=page_token, type=model_type(type), base_model=base_model, query=query,
        root_id=root_id, folder=folder,
    )
    return proto_json(await clients.unary("registry", clients.registry.ListModels, req))


@router.post("/models", tags=["models"], status_code=201,
             summary="Register a file already under loras/ or checkpoints/ (CreateModel)")
async def create_model(clients: Clients, body: JsonBody) -> JSONResponse:
    body = json_object(body)
    model = parse(body.get("model", body), model_pb2.Model(), "model")
    resp = await clients.unary("registry", clients.registry.CreateModel, registry_pb2.CreateModelRequest(model=model))
    return proto_json(resp.model, 201)


@router.post(
    "/models/upload",
    tags=["models"],
    status_code=201,
    summary="Upload a model file (multipart, streamed into UploadModel)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "type"],
                        "properties": {
                            "type": {"type": "string",
                                     "enum": ["lora", "checkpoint", "embedding", "vae", "upscaler"]},
                            "filename": {"type": "string"},
                            "display_name": {"type": "string"},
                            "short_name": {"type": "string"},
                            "trigger_words": {"type": "string", "description": "comma-separated"},
                            "tags": {"type": "string", "description": "comma-separated"},
                            "recommended_weight": {"type": "number"},
                            "base_model": {"type": "string"},
                            "description": {"type": "string"},
                            "expected_sha256": {"type": "string"},
                            "size": {"type": "integer"},
                            "file": {"type": "string", "format": "binary",
                                     "description": "last part: fields after it are ignored"},
                        },
                    }
                }
            },
        }
    },
)
async def upload_model(request: Request, clients: Clients) -> JSONResponse:
    resp = await stream_upload(request, clients, request.app.state.settings.max_upload_bytes)
    return proto_json(resp.model, 201)


@router.post("/models/rescan", tags=["models"], summary="Register files found on the volume (RescanModels)")
async def rescan_models(clients: Clients) -> JSONResponse:
    resp = await clients.unary("registry", clients.registry.RescanModels, registry_pb2.RescanModelsRequest(),
                               deadline=600)
    return proto_json(resp)


@router.get("/models/{filename}", tags=["models"], summary="Get one model (GetModel)")
async def get_model(filename: Filename, clients: Clients) -> JSONResponse:
    resp = await clients.unary("registry", clients.registry.GetModel, registry_pb2.GetModelRequest(filename=filename))
    return proto_json(resp.model)


@router.patch("/models/{filename}", tags=["models"],
              summary="Edit metadata (UpdateModel); the body's keys are the update mask unless update_mask is given")
async def update_model(
    filename: Filename,
    clients: Clients,
    body: JsonBody,
    update_mask: Annotated[str, Query(description="comma-separated field names", max_length=MAX_TEXT_CHARS)] = "",
) -> JSONResponse:
    body = json_object(body)
    fields = json_object(body.get("model", body), "model")
    model = parse({**fields, "filename": filename}, model_pb2.Model(), "model")
    paths = [p.strip() for p in update_mask.split(",") if p.strip()] or [k for k in fields if k != "filename"]
    req = registry_pb2.UpdateModelRequest(model=model, update_mask=field_mask_pb2.FieldMask(paths=paths))
    resp = await clients.unary("registry", clients.registry.UpdateModel, req)
    return proto_json(resp.model)


@router.delete("/models/{filename}", tags=["models"],
               summary="Delete a model and its file (DeleteModel); an entry in a library root keeps its file "
               "unless delete_file")
async def delete_model(filename: Filename, clients: Clients, keep_file: bool = False,
                       delete_file: bool = False) -> JSONResponse:
    req = registry_pb2.DeleteModelRequest(filename=filename, keep_file=keep_file, delete_file=delete_file)
    resp = await clients.unary("registry", clients.registry.DeleteModel, req)
    return proto_json(resp.model)


@router.get("/active-checkpoint", tags=["checkpoints"], summary="The active checkpoint (GetActiveCheckpoint)")
async def get_active_checkpoint(clients: Clients) -> JSONResponse:
    req = registry_pb2.GetActiveCheckpointRequest()
    return proto_json(await clients.unary("registry", clients.registry.GetActiveCheckpoint, req))


@router.put("/active-checkpoint", tags=["checkpoints"],
            summary="Set the active checkpoint (SetActiveCheckpoint); body {\"checkpoint\": NAME}")
async def set_active_checkpoint(clients: Clients, body: JsonBody) -> JSONResponse:
    req = parse(body, registry_pb2.SetActiveCheckpointRequest())
    return proto_json(await clients.unary("registry", clients.registry.SetActiveCheckpoint, req))


@router.post("/prompt/compose", tags=["models"],
             summary="Final prompt with the LoRAs' trigger words (ComposePrompt)")
async def compose_prompt(clients: Clients, body: JsonBody) -> JSONResponse:
    req = parse(body, registry_pb2.ComposePromptRequest())
    return proto_json(await clients.unary("registry", clients.registry.ComposePrompt, req))


# ---------------------------------------------------------------- civitai


@router.get("/civitai/parse", tags=["civitai"], summary="Parse a URL, id or AIR offline (ParseReference)")
async def parse_reference(reference: Text, clients: Clients) -> JSONResponse:
    req = civitai_pb2.ParseReferenceRequest(reference=reference)
    return proto_json(await clients.unary("civitai", clients.civitai.ParseReference, req))


@router.get("/civitai/info", tags=["civitai"], summary="Model metadata from CivitAI (GetModelInfo)")
async def model_info(
    clients: Clients,
    token: CivitaiToken = None,
    reference: Annotated[str | None, Query(max_length=MAX_TEXT_CHARS)] = None,
    model_id: Annotated[int | None, Query(ge=-(2**63), le=2**63 - 1)] = None,
    version_id: Annotated[int | None, Query(ge=-(2**63), le=2**63 - 1)] = None,
    sha256: Annotated[str | None, Query(max_length=128)] = None,
) -> JSONResponse:
    req = civitai_pb2.GetModelInfoRequest(token=token or "")
    if reference:
        req.reference = reference
    elif model_id:
        req.model_id = model_id
    elif version_id:
        req.version_id = version_id
    elif sha256:
        req.sha256 = sha256
    else:
        raise ApiError.local(400, "give one of reference, model_id, version_id, sha256", "INVALID_REQUEST")
    return proto_json(await clients.unary("civitai", clients.civitai.GetModelInfo, req, deadline=120))


@router.get("/civitai/search", tags=["civitai"], summary="Search the CivitAI catalogue (SearchModels)")
async def search_models(
    clients: Clients,
    token: CivitaiToken = None,
    query: Text = "",
    types: Annotated[list[str] | None, Query()] = None,
    base_models: Annotated[list[str] | None, Query()] = None,
    sort: Text = "",
    period: Text = "",
    nsfw: bool = False,
    page_size: Int32 = 0,
    page_token: Text = "",
) -> JSONResponse:
    req = civitai_pb2.SearchModelsRequest(
        query=query, types=types or [], base_models=base_models or [], sort=sort, period=period, nsfw=nsfw,
        page_size=page_size, page_token=page_token, token=token or "",
    )
    return proto_json(await clients.unary("civitai", clients.civitai.SearchModels, req, deadline=120))


@router.post("/civitai/identify", tags=["civitai"],
             summary="Identify a local file or sha256 on CivitAI (IdentifyFile); body {filename|sha256}")
async def identify_file(clients: Clients, body: JsonBody, token: CivitaiToken = None) -> JSONResponse:
    req = parse(body, civitai_pb2.IdentifyFileRequest())
    if token:
        req.token = token
    return proto_json(await clients.unary("civitai", clients.civitai.IdentifyFile, req, deadline=600))


@router.post("/civitai/check-updates", tags=["civitai"],
             summary="Newer versions of installed CivitAI models (CheckUpdates); body {filenames: [...]}")
async def check_updates(clients: Clients, token: CivitaiToken = None,
                        body: OptionalJsonBody = None) -> JSONResponse:
    req = parse({} if body is None else body, civitai_pb2.CheckUpdatesRequest())
    if token:
        req.token = token
    return proto_json(await clients.unary("civitai", clients.civitai.CheckUpdates, req, deadline=300))


@router.post("/civitai/ignore-update", tags=["civitai"],
             summary="'Ignore this version' of a model's update (IgnoreUpdate); body {model_id, version_id}")
async def ignore_update(clients: Clients, body: JsonBody) -> JSONResponse:
    req = parse(body, civitai_pb2.IgnoreUpdateRequest())
    return proto_json(await clients.unary("civitai", clients.civitai.IgnoreUpdate, req))


@router.post("/civitai/unignore-update", tags=["civitai"],
             summary="Stop ignoring a version (UnignoreUpdate); body {model_id, version_id}")
async def unignore_update(clients: Clients, body: JsonBody) -> JSONResponse:
    req = parse(body, civitai_pb2.UnignoreUpdateRequest())
    return proto_json(await clients.unary("civitai", clients.civitai.UnignoreUpdate, req))


@router.post("/downloads", tags=["downloads"], status_code=201,
             summary="Start a download job (StartDownload); body {reference, file_id?, replaces?, "
                     "delete_replaced?} (replaces: 'Download update' of that installed entry)")
async def start_download(clients: Clients, body: JsonBody, token: CivitaiToken = None) -> JSONResponse:
    req = parse(body, civitai_pb2.StartDownloadRequest())
    if token:
        req.token = token
    resp = await clients.unary("civitai", clients.civitai.StartDownload, req, deadline=120)
    return proto_json(resp.job, 201)


@router.get("/downloads", tags=["downloads"], summary="List download jobs, newest first (ListDownloads)")
async def list_downloads(clients: Clients, active_only: bool = False, page_size: Int32 = 0,
                         page_token: Text = "") -> JSONResponse:
    req = civitai_pb2.ListDownloadsRequest(active_only=active_only, page_size=page_size, page_token=page_token)
    return proto_json(await clients.unary("civitai", clients.civitai.ListDownloads, req))


@router.get("/downloads/{job_id}", tags=["downloads"], summary="One download job (GetDownload)")
async def get_download(job_id: JobId, clients: Clients) -> JSONResponse:
    resp = await clients.unary("civitai", clients.civitai.GetDownload, civitai_pb2.GetDownloadRequest(job_id=job_id))
    return proto_json(resp.job)


@router.post("/downloads/{job_id}/cancel", tags=["downloads"], summary="Cancel a download job (CancelDownload)")
async def cancel_download(job_id: JobId, clients: Clients) -> JSONResponse:
    req = civitai_pb2.CancelDownloadRequest(job_id=job_id)
    resp = await clients.unary("civitai", clients.civitai.CancelDownload, req)
    return proto_json(resp.job)


def _job_event(msg: civitai_pb2.WatchDownloadResponse) -> tuple[str, str | None, Any]:
    return "job", None, to_dict(msg.job)


@router.get("/downloads/{job_id}/events", tags=["downloads"], responses={200: SSE_DOC},
            summary="Watch a download job as SSE (`event: job` per change). Disconnecting does not cancel the job")
async def watch_download(job_id: JobId, clients: Clients) -> EventSourceResponse:
    call = clients.civitai.WatchDownload(civitai_pb2.WatchDownloadRequest(job_id=job_id), timeout=STREAM_TIMEOUT)
    return await sse_response(clients, "civitai", call, _job_event)


# ---------------------------------------------------------------- inference


def _job_stream_event(msg: Any) -> tuple[str, str | None, Any]:
    kind = msg.WhichOneof("event")
    return kind or "message", None, to_dict(getattr(msg, kind)) if kind else {}


@router.post("/generate", tags=["inference"], responses={200: SSE_DOC},
             summary="Text to image as SSE: `queued`, `progress`, then `result` (png base64). "
             "Disconnecting cancels the job")
async def generate(clients: Clients, body: JsonBody) -> EventSourceResponse:
    req = parse(body, inference_pb2.GenerateRequest())
    call = clients.inference.Generate(req, timeout=STREAM_TIMEOUT)
    return await sse_response(clients, "inference", call, _job_stream_event)


@router.post("/upscale", tags=["inference"], responses={200: SSE_DOC},
             summary="Upscale as SSE (body: UpscaleRequest JSON, image base64): `queued`, `progress`, `result`. "
             "Disconnecting cancels the job")
async def upscale(clients: Clients, body: JsonBody) -> EventSourceResponse:
    req = parse(body, inference_pb2.UpscaleRequest())
    call = clients.inference.Upscale(req, timeout=STREAM_TIMEOUT)
    return await sse_response(clients, "inference", call, _job_stream_event)


@router.post("/checkpoints/load", tags=["checkpoints"], responses={200: SSE_DOC},
             summary="Load a checkpoint ahead of time as SSE (LoadCheckpoint); body {checkpoint?}")
async def load_checkpoint(clients: Clients, body: OptionalJsonBody = None) -> EventSourceResponse:
    req = parse({} if body is None else body, inference_pb2.LoadCheckpointRequest())
    call = clients.inference.LoadCheckpoint(req, timeout=STREAM_TIMEOUT)
    return await sse_response(clients, "inference", call, _job_stream_event)


@router.get("/inference/status", tags=["inference"], summary="Device, cache and queue state (GetStatus)")
async def inference_status(clients: Clients) -> JSONResponse:
    req = inference_pb2.GetStatusRequest()
    return proto_json(await clients.unary("inference", clients.inference.GetStatus, req))


@router.get("/inference/schedulers", tags=["inference"], summary="Scheduler names (ListSchedulers)")
async def list_schedulers(clients: Clients) -> JSONResponse:
    req = inference_pb2.ListSchedulersRequest()
    return proto_json(await clients.unary("inference", clients.inference.ListSchedulers, req))


# ---------------------------------------------------------------- outputs (saved Generate / Upscale results)

# Ids are the inference service's (it refuses any other with INVALID_OUTPUT_ID); the bound keeps a huge
# one from reaching it at all.
MAX_OUTPUT_ID_CHARS = 64
OutputId = Annotated[str, Path(max_length=MAX_OUTPUT_ID_CHARS)]
# An output's image never changes under its id: a browser may keep it, but only for this user (the
# route is behind the API key).
OUTPUT_IMAGE_CACHE = "private, max-age=31536000, immutable"
PNG_DOC = {"description": "The PNG, with its A1111 infotext in the `parameters` text chunk",
           "content": {"image/png": {}}}


@router.get("/outputs", tags=["outputs"], summary="Saved results, newest first, without images (ListOutputs)")
async def list_outputs(clients: Clients, page_size: Int32 = 0, page_token: Text = "") -> JSONResponse:
    req = inference_pb2.ListOutputsRequest(page_size=page_size, page_token=page_token)
    return proto_json(await clients.unary("inference", clients.inference.ListOutputs, req))


@router.get("/outputs/{output_id}", tags=["outputs"],
            summary="One saved result's parameters and infotext (GetOutput, without the image)")
async def get_output(output_id: OutputId, clients: Clients) -> JSONResponse:
    req = inference_pb2.GetOutputRequest(id=output_id, without_image=True)
    resp = await clients.unary("inference", clients.inference.GetOutput, req)
    return proto_json(resp.output)


def _etag_matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


@router.get("/outputs/{output_id}/image", tags=["outputs"], response_class=Response, responses={200: PNG_DOC},
            summary="One saved result's PNG (GetOutput); ETag and If-None-Match for the browser's cache")
async def get_output_image(
    output_id: OutputId,
    clients: Clients,
    if_none_match: Annotated[str | None, Header(max_length=MAX_TEXT_CHARS)] = None,
) -> Response:
    etag = f'"{output_id}"'
    headers = {"ETag": etag, "Cache-Control": OUTPUT_IMAGE_CACHE}
    revalidating = if_none_match is not None and _etag_matches(if_none_match, etag)
    # Revalidating still asks the service (without the image): a deleted output is a 404, not a 304.
    req = inference_pb2.GetOutputRequest(id=output_id, without_image=revalidating)
    resp = await clients.unary("inference", clients.inference.GetOutput, req)
    if revalidating:
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'inline; filename="{resp.output.id}.png"'
    return Response(resp.png, media_type="image/png", headers=headers)


@router.delete("/outputs/{output_id}", tags=["outputs"], status_code=204,
               summary="Delete a saved result, image and parameters (DeleteOutput)")
async def delete_output(output_id: OutputId, clients: Clients) -> Response:
    await clients.unary("inference", clients.inference.DeleteOutput, inference_pb2.DeleteOutputRequest(id=output_id))
    return Response(status_code=204)


# ---------------------------------------------------------------- anything else under /api/v1

ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.api_route("/{path:path}", methods=ANY_METHOD, include_in_schema=False)
async def no_such_route(request: Request, path: str) -> None:
    """Last route: the web UI is mounted at "/" and would answer a mistyped API path with its own 404."""
    # Imported here: gateway.api_library builds on this module's parameter types (the app includes its
    # router before this one).
    from gateway.api_library import router as library_router

    allowed = sorted({
        method for route in [*library_router.routes, *router.routes]
        if isinstance(route, APIRoute) and route.endpoint is not no_such_route
        and route.path_regex.match(request.url.path)
        for method in route.methods or ()
    })
    if allowed:
        raise HTTPException(405, f"{request.method} is not allowed on {request.url.path}; it takes "
                            f"{', '.join(allowed)}", headers={"Allow": ", ".join(allowed)})
    raise HTTPException(404, f"no API route {request.url.path} (see /docs)")
