"""The node-local model cache against a real registry on 127.0.0.1: files fetched by sha256 and verified,
a cut download resumed from its .part (through a real TCP proxy that drops the connection), corrupt local
copies refused and fetched again, the byte bound kept by evicting files not in use, one fetch shared."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path

import pytest
from inference_registry import start_registry

from devtools.model_files import write_safetensors
from inference_svc.errors import ModelFileUnverified, NodeCacheFull
from inference_svc.node_cache import NodeCache, claim_folder
from modelmanager.v1 import model_pb2, registry_pb2, registry_pb2_grpc
from service_kit import errors, insecure_channel
from service_kit.peer import Peer

MIB = 1024 * 1024


class Registry:
    def __init__(self, server, user_models: Path) -> None:
        self.server = server
        self.user_models = user_models
        self.peer = Peer("registry", insecure_channel(server.address), address=server.address)
        self.stub = registry_pb2_grpc.ModelRegistryServiceStub(self.peer.channel)

    async def add(self, name: str, size: int, seed: int) -> tuple[str, bytes]:
        path = write_safetensors(self.user_models / "loras" / name, "lora", payload_bytes=size, seed=seed)
        reply = await self.stub.CreateModel(registry_pb2.CreateModelRequest(
            model=model_pb2.Model(filename=name, type=model_pb2.MODEL_TYPE_LORA)))
        return reply.model.sha256, path.read_bytes()


@pytest.fixture
async def registry(volumes):
    user_models, models = volumes
    server = await start_registry(user_models, models)
    reg = Registry(server, user_models)
    yield reg
    await reg.peer.close()
    await server.stop(0)


def cache_at(folder: Path, peer: Peer, max_bytes: int = 64 * MIB) -> NodeCache:
    return NodeCache(folder, max_bytes, lambda: peer, backoff_s=0.05)


async def in_task(coro):
    """Run in a task of its own: a file handed out stays pinned until its task ends."""
    return await asyncio.create_task(coro)


async def test_fetch_verify_and_reuse(registry, tmp_path: Path):
    sha, data = await registry.add("a.safetensors", 3 * MIB + 5, seed=1)
    cache = cache_at(tmp_path / "cache", registry.peer)
    path = await in_task(cache.get(sha, "a.safetensors", "LoRA a"))
    assert path == tmp_path / "cache" / f"{sha}.safetensors" and path.read_bytes() == data
    assert (cache.stats.fetches, cache.stats.fetched_bytes) == (1, len(data))
    assert not list((tmp_path / "cache").glob("*.part"))
    assert await in_task(cache.get(sha.upper(), "a.safetensors", "LoRA a")) == path
    assert cache.stats.fetched_bytes == len(data)

    # Another process on the same folder: the file is hashed before its first use, not fetched.
    again = cache_at(tmp_path / "cache", registry.peer)
    assert await in_task(again.get(sha, "a.safetensors", "LoRA a")) == path
    assert again.stats.fetched_bytes == 0

    # No sha256 yet (the registry hashes in the background), and one the registry does not know.
    with pytest.raises(ModelFileUnverified):
        await in_task(cache.get("", "b.safetensors", "LoRA b"))
    with pytest.raises(errors.NotFound) as caught:
        await in_task(cache.get("ab" * 32, "b.safetensors", "LoRA b"))
    assert caught.value.reason == "MODEL_NOT_FOUND"


async def test_a_leftover_part_resumes_from_its_length(registry, tmp_path: Path):
    sha, data = await registry.add("a.safetensors", 4 * MIB, seed=2)
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / f"{sha}.safetensors.part").write_bytes(data[: 3 * MIB])  # a worker that died mid-download
    cache = cache_at(folder, registry.peer)
    path = await in_task(cache.get(sha, "a.safetensors", "LoRA a"))
    assert path.read_bytes() == data
    assert cache.stats.resumed == 1 and cache.stats.fetched_bytes == len(data) - 3 * MIB


class CuttingProxy:
    """A TCP proxy to the registry that drops its first connection after `cut_after` bytes from the server."""

    def __init__(self, upstream: str, cut_after: int) -> None:
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.cut_after = cut_after
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        limit = self.cut_after if self.connections == 1 else None
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, budget: int | None) -> None:
            sent = 0
            with contextlib.suppress(ConnectionError):
                while data := await src.read(64 * 1024):
                    if budget is not None and sent + len(data) > budget:
                        dst.write(data[: budget - sent])
                        break
                    dst.write(data)
                    sent += len(data)
                    await dst.drain()

        to_client = asyncio.create_task(pump(up_reader, writer, limit))
        to_server = asyncio.create_task(pump(reader, up_writer, None))
        await asyncio.wait([to_client, to_server], return_when=asyncio.FIRST_COMPLETED)
        for task in (to_client, to_server):
            task.cancel()
        for w in (writer, up_writer):
            w.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_a_cut_download_resumes_where_it_stopped(registry, tmp_path: Path):
    sha, data = await registry.add("a.safetensors", 6 * MIB, seed=3)
    proxy = CuttingProxy(registry.server.address, cut_after=2 * MIB)
    address = await proxy.start()
    peer = Peer("registry", insecure_channel(address), address=address)
    try:
        cache = cache_at(tmp_path / "cache", peer)
        path = await in_task(cache.get(sha, "a.safetensors", "LoRA a"))
        assert path.read_bytes() == data
        assert proxy.connections >= 2
        # The second call asked from the .part's length: fewer bytes than twice the file came over.
        assert cache.stats.fetches == 1 and len(data) <= cache.stats.fetched_bytes < 2 * len(data) - MIB
    finally:
        await peer.close()
        await proxy.stop()


async def test_corrupt_copies_are_refused_and_fetched_again(registry, tmp_path: Path):
    sha, data = await registry.add("a.safetensors", 2 * MIB, seed=4)
    cache = cache_at(tmp_path / "cache", registry.peer)
    path = await in_task(cache.get(sha, "a.safetensors", "LoRA a"))
    # A byte flipped on the node's disk (same size): refused at the next use, fetched again.
    corrupt = bytearray(data)
    corrupt[MIB] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert (await in_task(cache.get(sha, "a.safetensors", "LoRA a"))).read_bytes() == data
    assert cache.stats.refused == 1 and cache.stats.fetches == 2

    # A .part whose prefix is wrong: the download is thrown away and fetched from 0.
    sha_b, data_b = await registry.add("b.safetensors", 2 * MIB, seed=5)
    bad = bytearray(data_b[:MIB])
    bad[10] ^= 0xFF
    (tmp_path / "cache" / f"{sha_b}.safetensors.part").write_bytes(bytes(bad))
    fresh = cache_at(tmp_path / "cache", registry.peer)
    assert (await in_task(fresh.get(sha_b, "b.safetensors", "LoRA b"))).read_bytes() == data_b
    assert fresh.stats.refused == 1 and fresh.stats.resumed == 1
    assert fresh.stats.fetched_bytes == (len(data_b) - MIB) + len(data_b)


async def test_the_byte_bound_evicts_files_not_in_use(registry, tmp_path: Path):
    files = [await registry.add(f"{n}.safetensors", 2 * MIB, seed=10 + n) for n in range(4)]
    size = len(files[0][1])
    cache = cache_at(tmp_path / "cache", registry.peer, max_bytes=2 * size + size // 2)
    folder = tmp_path / "cache"

    def present() -> set[int]:
        return {n for n, (sha, _) in enumerate(files) if (folder / f"{sha}.safetensors").exists()}

    await in_task(cache.get(files[0][0], "0.safetensors", "LoRA 0"))
    await in_task(cache.get(files[1][0], "1.safetensors", "LoRA 1"))
    await in_task(cache.get(files[0][0], "0.safetensors", "LoRA 0"))  # 0 used last: 1 is the LRU one
    await in_task(cache.get(files[2][0], "2.safetensors", "LoRA 2"))
    assert present() == {0, 2} and cache.used_bytes <= cache.max_bytes

    # A file in use (its task still running) is not evicted; when both are in use nothing fits.
    release = asyncio.Event()

    async def job(n: int, has_file: asyncio.Event) -> None:
        await cache.get(files[n][0], f"{n}.safetensors", f"LoRA {n}")
        has_file.set()
        await release.wait()

    holding = [asyncio.Event(), asyncio.Event()]
    holders = [asyncio.create_task(job(2, holding[0]))]
    await holding[0].wait()
    await in_task(cache.get(files[3][0], "3.safetensors", "LoRA 3"))
    assert present() == {2, 3}
    holders.append(asyncio.create_task(job(3, holding[1])))
    await holding[1].wait()
    with pytest.raises(NodeCacheFull):
        await in_task(cache.get(files[0][0], "0.safetensors", "LoRA 0"))
    release.set()
    await asyncio.gather(*holders)
    await in_task(cache.get(files[0][0], "0.safetensors", "LoRA 0"))
    assert 0 in present() and len(present()) == 2

    # Bigger than the whole bound: refused before a byte is written.
    small = cache_at(tmp_path / "small", registry.peer, max_bytes=size - 1)
    with pytest.raises(NodeCacheFull):
        await in_task(small.get(files[1][0], "1.safetensors", "LoRA 1"))
    assert not list((tmp_path / "small").glob("*.safetensors*"))


async def test_concurrent_requests_share_one_fetch(registry, tmp_path: Path):
    sha, data = await registry.add("a.safetensors", 4 * MIB, seed=20)
    cache = cache_at(tmp_path / "cache", registry.peer)
    paths = await asyncio.gather(*(in_task(cache.get(sha, "a.safetensors", "LoRA a")) for _ in range(6)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == data
    assert (cache.stats.fetches, cache.stats.fetched_bytes) == (1, len(data))
    assert hashlib.sha256(paths[0].read_bytes()).hexdigest() == sha


def test_each_worker_claims_a_slot_of_its_own(tmp_path: Path):
    first, lock_a = claim_folder(tmp_path / "node")
    second, lock_b = claim_folder(tmp_path / "node")
    assert first != second
    lock_a.release()
    again, lock_c = claim_folder(tmp_path / "node")
    assert again == first  # a replacement worker finds the files of the one before it
    lock_b.release()
    lock_c.release()
