"""The HTTP API of library health (issue 13): duplicates, disk use, and bulk actions on a selection.

Same conventions as gateway.api (proto JSON in and out, errors per gateway.errors); the app includes
this router before gateway.api's, whose last route catches every other /api/v1 path. A bulk delete is
one DeleteModel per entry, each result reported (one entry's failure does not stop the others); bulk
tags are one BatchUpdateTags call (all or nothing, one index write).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from gateway.api import MAX_FILENAME_CHARS, Clients, JsonBody
from gateway.clients import proto_json, to_dict
from gateway.errors import ApiError
from gateway.protojson import parse
from gateway.security import require_api_key
from modelmanager.v1 import registry_pb2

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_key)])

# As the registry's BatchUpdateTags: a selection is at most this many entries.
MAX_SELECTION = 1_000
MAX_BIGGEST = 1_000


@router.get("/duplicates", tags=["library"],
            summary="Entries that are the same file: one sha256 under several names or roots, or one inode "
            "under two names (ListDuplicates), with what a clean-up would free")
async def list_duplicates(clients: Clients) -> JSONResponse:
    return proto_json(await clients.unary("registry", clients.registry.ListDuplicates,
                                          registry_pb2.ListDuplicatesRequest()))


@router.get("/disk-usage", tags=["library"],
            summary="Bytes per type and per root, each filesystem's free space, the biggest files (GetDiskUsage)")
async def get_disk_usage(clients: Clients, biggest: int = Query(0, ge=0, le=MAX_BIGGEST)) -> JSONResponse:
    req = registry_pb2.GetDiskUsageRequest(biggest=biggest)
    return proto_json(await clients.unary("registry", clients.registry.GetDiskUsage, req))


@router.post("/models/tags", tags=["models"],
             summary="Add and remove tags on a selection in one change (BatchUpdateTags); body {filenames: [...], "
             "add_tags?: [...], remove_tags?: [...]}")
async def batch_update_tags(clients: Clients, body: JsonBody) -> JSONResponse:
    req = parse(_object(body), registry_pb2.BatchUpdateTagsRequest())
    return proto_json(await clients.unary("registry", clients.registry.BatchUpdateTags, req))


@router.post("/models/delete", tags=["models"],
             summary="Delete a selection (DeleteModel for each); body {filenames: [...], delete_file?, keep_file?}. "
             "Answers {results: [{filename, deleted, model | error}]}, one per filename, in order")
async def bulk_delete(clients: Clients, body: JsonBody) -> JSONResponse:
    data = _object(body)
    unknown = sorted(set(data) - {"filenames", "delete_file", "keep_file"})
    if unknown:
        raise ApiError.local(400, f"unknown field(s): {', '.join(unknown)}", "INVALID_REQUEST")
    filenames = _selection(data.get("filenames"))
    flags = {k: data.get(k, False) for k in ("delete_file", "keep_file")}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise ApiError.local(400, "delete_file and keep_file are true or false", "INVALID_REQUEST")
    results: list[dict[str, Any]] = []
    for name in filenames:
        req = registry_pb2.DeleteModelRequest(filename=name, **flags)
        try:
            resp = await clients.unary("registry", clients.registry.DeleteModel, req)
        except ApiError as err:
            if err.http_status in (503, 504):
                raise  # the registry is gone: the rest would fail the same way
            results.append({"filename": name, "deleted": False, "error": err.body()["error"]})
            continue
        results.append({"filename": name, "deleted": True, "model": to_dict(resp.model)})
    return JSONResponse({"results": results, "deleted": sum(r["deleted"] for r in results)})


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError.local(400, "the body must be a JSON object", "INVALID_REQUEST")
    return body


def _selection(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ApiError.local(400, "filenames must be a non-empty list of strings", "INVALID_REQUEST")
    if len(value) > MAX_SELECTION:
        raise ApiError.local(400, f"{len(value)} filenames, at most {MAX_SELECTION} in one call", "TOO_MANY_ITEMS",
                             {"limit": str(MAX_SELECTION)})
    if any(len(v) > MAX_FILENAME_CHARS for v in value):
        raise ApiError.local(400, f"a filename is over {MAX_FILENAME_CHARS} characters", "INVALID_REQUEST")
    return list(dict.fromkeys(value))  # asked twice: deleted once
