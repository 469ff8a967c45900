"""The registry, as this service needs it: the active checkpoint, composed prompts, checkpoint paths,
and the library roots (the folders besides the volumes whose files may be loaded).

Model files are read where the registry says they lie (confined to the model roots), or, on a fleet
worker without the shared volume (`use_node_cache`), fetched by their sha256 into a node-local cache
(node_cache.py). The default checkpoint is not indexed: it is read from the local models dir either way.

Failures follow service_kit.peer's rule: a registry that does not answer is UNAVAILABLE /
REGISTRY_UNAVAILABLE; its own answers (NOT_FOUND / LORA_NOT_FOUND, UNAVAILABLE / INDEX_WRITE_FAILED...)
pass on intact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference_svc.errors import CheckpointNotFound
from inference_svc.model_paths import LIBRARY_ROOTS_TTL_S, LibraryRoots, ModelRoots
from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import errors, insecure_channel
from service_kit.config import DEFAULT_CHECKPOINT
from service_kit.peer import Peer, paged

if TYPE_CHECKING:
    from inference_svc.node_cache import NodeCache


def default_checkpoint_location(path: Path) -> Path:
    """The default checkpoint's file or, when there is none, the diffusers folder it would lie in.

    The registry only indexes single files, but the default checkpoint is not indexed: its folder on
    the models volume (illustrious-xl/) may hold a diffusers layout (model_index.json, unet/, vae/...)
    instead of Illustrious-XL-v0.1.safetensors, and the loader reads either.
    """
    if not path.exists() and (path.parent / "model_index.json").is_file():
        return path.parent
    return path


@dataclass(frozen=True)
class ResolvedCheckpoint:
    name: str
    path: Path
    sha256: str = ""  # "" for the default checkpoint (not indexed) or one not hashed yet


class RegistryClient:
    def __init__(self, address: str, *, default_checkpoint_path: Path, model_roots: Iterable[Path],
                 timeout_s: float = 10.0, library_roots_ttl_s: float = LIBRARY_ROOTS_TTL_S):
        self.address = address
        self.default_checkpoint_path = default_checkpoint_path
        # Every path handed out below lies under one of these.
        self.roots = ModelRoots(model_roots, LibraryRoots(self.library_roots, ttl_s=library_roots_ttl_s))
        self.timeout_s = timeout_s
        self._peer: Peer | None = None
        self._stub: registry_pb2_grpc.ModelRegistryServiceStub | None = None
        self.node_cache: NodeCache | None = None

    def use_node_cache(self, folder: Path, max_bytes: int) -> NodeCache:
        """From now on, fetch indexed model files by sha256 into `folder` (a slot of it) instead of reading
        the registry's paths: for a worker that does not mount the shared volume."""
        from inference_svc.node_cache import NodeCache, claim_folder

        slot, lock = claim_folder(folder)
        self.node_cache = NodeCache(slot, max_bytes, lambda: self.peer, lock=lock)
        return self.node_cache

    async def _local(self, path: Path, sha256: str, filename: str, what: str) -> Path:
        """Where this process reads a registry entry's file: its confined path, or the node cache's copy."""
        if self.node_cache is None:
            return await self.roots.confine(path, what)
        return await self.node_cache.get(sha256, filename, what)

    @property
    def peer(self) -> Peer:
        # Made lazily, on the serving event loop.
        if self._peer is None:
            self._peer = Peer("registry", insecure_channel(self.address), address=self.address,
                              deadline=self.timeout_s)
        return self._peer

    @property
    def stub(self) -> registry_pb2_grpc.ModelRegistryServiceStub:
        if self._stub is None:
            self._stub = registry_pb2_grpc.ModelRegistryServiceStub(self.peer.channel)
        return self._stub

    async def close(self) -> None:
        if self.node_cache is not None:
            self.node_cache.close()
        if self._peer is not None:
            await self._peer.close()
            self._peer, self._stub = None, None

    async def _call(self, method: Any, request: Any) -> Any:
        return await self.peer.call(method, request)

    async def checkpoint(self, override: str = "") -> ResolvedCheckpoint:
        """The checkpoint a job runs on: `override` when given, else the registry's active one."""
        found = await self._checkpoint(override)
        what = f"checkpoint {found.name}"
        if found.name == DEFAULT_CHECKPOINT:  # not indexed: the local models dir, cache or not
            return ResolvedCheckpoint(found.name, await self.roots.confine(found.path, what))
        return ResolvedCheckpoint(found.name, await self._local(found.path, found.sha256, found.name, what),
                                  found.sha256)

    async def _checkpoint(self, override: str) -> ResolvedCheckpoint:
        if not override:
            reply = await self._call(self.stub.GetActiveCheckpoint, registry_pb2.GetActiveCheckpointRequest())
            if reply.checkpoint == DEFAULT_CHECKPOINT:
                return ResolvedCheckpoint(reply.checkpoint, default_checkpoint_location(Path(reply.path)))
            return ResolvedCheckpoint(reply.checkpoint, Path(reply.path), reply.model.sha256)
        if override == DEFAULT_CHECKPOINT:
            return ResolvedCheckpoint(override, default_checkpoint_location(self.default_checkpoint_path))
        try:
            reply = await self._call(self.stub.GetModel, registry_pb2.GetModelRequest(filename=override))
        except errors.NotFound as exc:
            raise CheckpointNotFound(f"no checkpoint {override!r} in the registry", metadata={"checkpoint": override}) from exc
        if reply.model.type != model_pb2.MODEL_TYPE_CHECKPOINT:
            raise CheckpointNotFound(f"{override!r} is not a checkpoint", metadata={"checkpoint": override})
        return ResolvedCheckpoint(reply.model.filename, Path(reply.model.path), reply.model.sha256)

    async def compose_prompt(
        self, prompt: str, loras: list[model_pb2.LoraSelection]
    ) -> registry_pb2.ComposePromptResponse:
        reply = await self._call(
            self.stub.ComposePrompt, registry_pb2.ComposePromptRequest(prompt=prompt, loras=loras)
        )
        for lora in reply.loras:
            lora.path = str(await self._local(Path(lora.path), lora.sha256, lora.filename, f"LoRA {lora.filename}"))
        return reply

    async def library_roots(self) -> list[str]:
        """The registry's library roots' paths. A registry that predates them has none (UNIMPLEMENTED)."""
        try:
            reply = await self._call(self.stub.ListLibraryRoots, registry_pb2.ListLibraryRootsRequest())
        except errors.Unimplemented:
            return []
        return [root.path for root in reply.roots]

    # ---- embeddings, VAEs, upscalers (issue 14) -----------------------------------------------

    async def embeddings(self) -> list[EmbeddingEntry]:
        """Every embedding the registry lists, with its token; paths confined like the LoRAs'."""
        found: list[EmbeddingEntry] = []
        request = registry_pb2.ListModelsRequest(type=model_pb2.MODEL_TYPE_EMBEDDING, page_size=1000)
        async for model in paged(lambda page: self._call(self.stub.ListModels, page), request, "models"):
            word = model.embedding_token or (model.trigger_words[0] if model.trigger_words else "")
            word = word or Path(model.filename).stem
            found.append(EmbeddingEntry(model.filename, word, Path(model.path), model.sha256))
        return found

    async def confine_embedding(self, entry: EmbeddingEntry) -> EmbeddingEntry:
        path = await self._local(entry.path, entry.sha256, entry.filename, f"embedding {entry.filename}")
        return EmbeddingEntry(entry.filename, entry.token, path, entry.sha256)

    async def model_file(self, filename: str, kind: int, missing: type[errors.ServiceError], what: str) -> Path:
        """The confined path of the registry entry `filename` of type `kind`; `missing` when there is none."""
        try:
            reply = await self._call(self.stub.GetModel, registry_pb2.GetModelRequest(filename=filename))
        except errors.NotFound as exc:
            raise missing(f"no {what} {filename!r} in the registry", metadata={what: filename}) from exc
        if reply.model.type != kind:
            raise missing(f"{filename!r} is not a {what}", metadata={what: filename})
        return await self._local(Path(reply.model.path), reply.model.sha256, reply.model.filename, f"{what} {filename}")

    async def default_vae(self, checkpoint: str) -> str:
        """The checkpoint's default VAE filename (Model.default_vae); "" for none, or for the default
        checkpoint, which the registry does not index."""
        if checkpoint == DEFAULT_CHECKPOINT:
            return ""
        try:
            reply = await self._call(self.stub.GetModel, registry_pb2.GetModelRequest(filename=checkpoint))
        except errors.NotFound:
            return ""
        return reply.model.default_vae


@dataclass(frozen=True)
class EmbeddingEntry:
    filename: str
    token: str
    path: Path
    sha256: str = ""
