"""Helpers of the library-import tests: start an import and watch it to its end, list models with filters."""

from __future__ import annotations

from modelmanager.v1 import model_pb2, registry_pb2

DONE = (registry_pb2.IMPORT_STATE_SUCCEEDED, registry_pb2.IMPORT_STATE_FAILED, registry_pb2.IMPORT_STATE_CANCELLED)


async def wait_job(stub, job_id: str) -> registry_pb2.ImportJob:
    last = None
    async for update in stub.WatchImport(registry_pb2.WatchImportRequest(id=job_id)):
        last = update.job
    assert last is not None and last.state in DONE
    return last


async def run_import(stub, **request) -> registry_pb2.ImportJob:
    started = await stub.StartImport(registry_pb2.StartImportRequest(**request))
    return await wait_job(stub, started.job.id)


async def models_of(stub, **filters) -> dict[str, model_pb2.Model]:
    listed = await stub.ListModels(registry_pb2.ListModelsRequest(page_size=1000, **filters))
    return {m.filename: m for m in listed.models}
