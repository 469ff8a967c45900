"""Composition root: settings -> index (load, migrate, rescan) -> registry -> servicer -> server."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import gc
import os
from collections.abc import Iterator
from pathlib import Path

from metadata_svc.config import RegistrySettings
from metadata_svc.errors import DOMAIN
from metadata_svc.index_store import INDEX_NAME, IndexState, VolumeLock, open_index
from metadata_svc.migration import migrate
from metadata_svc.proto_mapping import wire_size
from metadata_svc.registry import Registry
from metadata_svc.servicer import RegistryServicer
from modelmanager.v1 import registry_pb2, registry_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, get_logger, insecure_channel
from service_kit.peer import Peer

log = get_logger("metadata_svc")


def remove_leftovers(root: Path) -> None:
    """Temp files of a registry that died mid-write (index temp files, upload .part files); ours alone."""
    stale = [*root.glob(f"{INDEX_NAME}.*.tmp")]
    for folder in ("loras", "checkpoints"):
        # One walk per folder (os.walk, not four pathlib globs over 100,000 names): `.upload-*.part` in the
        # folder itself, `.import-*.part` at any depth; like `**`, links to folders are not followed.
        for parent, dirs, files in os.walk(root / folder):
            top = parent == str(root / folder)
            stale += [Path(parent, name) for name in (*files, *dirs) if name[:1] == "." and _leftover(name, top)]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            log.info("registry.removed_leftover", path=str(path))


def _leftover(name: str, top: bool) -> bool:
    return ((top and fnmatch.fnmatchcase(name, ".upload-*.part")) or fnmatch.fnmatchcase(name, ".import-*.part"))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading 100,000 entries makes millions of objects; the cyclic collector would walk the growing heap
    again and again (half of the parse). Paused while loading; what start-up built is then frozen (kept
    out of later collections), so a full collection never walks the index while requests wait."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
    gc.freeze()


async def open_registry(settings: RegistrySettings) -> Registry:
    """Load the index (CorruptIndexError stops here, file untouched), migrate, rescan, write back if changed."""
    root = settings.user_models_dir
    root.mkdir(parents=True, exist_ok=True)
    index_path = root / INDEX_NAME
    lock = VolumeLock(root)
    lock.acquire()
    try:
        registry = await _open(settings, root, index_path)
    except BaseException:
        lock.release()
        raise
    registry.volume_lock = lock
    return registry


async def _open(settings: RegistrySettings, root: Path, index_path: Path) -> Registry:
    with _collector_paused():
        return await _load(settings, root, index_path)


async def _load(settings: RegistrySettings, root: Path, index_path: Path) -> Registry:
    loaded = await asyncio.to_thread(open_index, index_path)  # a crash's journals compacted first
    state = loaded or IndexState()
    steps = await asyncio.to_thread(migrate, root, state)
    await asyncio.to_thread(remove_leftovers, root)
    # Sorts 100,000 entries for List (and renders the lines the file did not hold as they are): off the loop.
    registry = await asyncio.to_thread(Registry, settings, state, wire_size)
    registry.store.configure(journal_from_bytes=settings.index_journal_from_bytes,
                             compact_idle=settings.index_compact_idle)
    found = await asyncio.to_thread(registry.rescanner.scan)
    registry.rescanner.apply(found)
    for skip in found.skipped:
        log.warning("rescan.skipped", path=skip.path, reason=skip.reason)
    if found.missing:
        log.warning("rescan.missing_files", filenames=found.missing)
    if loaded is None or steps or found.added:
        await asyncio.to_thread(registry.store.write_now, *registry.catalog.snapshot())
    log.info("registry.opened", index=str(index_path), models=len(registry), added=len(found.added),
             missing=len(found.missing), migrated=len(steps))
    return registry


async def create_server(settings: RegistrySettings) -> GrpcServer:
    """The registry server, not started (the caller awaits `.start()`); port 0 works."""
    registry = await open_registry(settings)
    server = GrpcServer(
        name="registry",
        listen=settings.listen,
        bindings=[
            ServiceBinding.of(
                registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"],
                RegistryServicer(registry),
                registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server,
            )
        ],
        error_domain=DOMAIN,
    )
    hasher = asyncio.create_task(registry.fill_missing_hashes(), name="registry-hasher")
    # Imports identify files through the CivitAI service; a channel connects lazily, so a service that is
    # down costs an import only its identification (see identify.py).
    civitai = Peer("civitai", insecure_channel(settings.civitai), address=settings.civitai)
    registry.library.connect_civitai(civitai)

    async def shutdown() -> None:
        hasher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hasher
        await registry.library.close()
        await civitai.close()
        await registry.store.close()  # the journal compacted: the file complete after a clean stop
        if registry.volume_lock is not None:
            registry.volume_lock.release()

    server.on_shutdown.append(shutdown)
    server.registry = registry  # type: ignore[attr-defined]  # for in-process tests and benches
    return server
