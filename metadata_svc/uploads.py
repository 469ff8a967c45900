"""UploadModel: a header, then chunks, streamed into a `.part` file and renamed into place only when valid.

While streaming: the size limit is enforced per chunk and the sha256 is
computed as bytes arrive (in a thread, with the write). When the stream ends
(or, if the header set require_commit, at its `commit` message: a stream that
ends without one was abandoned by its client and installs nothing) the file is checked (size, hash, safetensors header vs claimed type), fsynced
and linked to its final name, which fails rather than overwrite. Any failure
or cancellation on the way removes the `.part` file; nothing is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from metadata_svc import inspection as insp
from metadata_svc.errors import (
    DuplicateHeader,
    InvalidSha256,
    InvalidSize,
    MissingHeader,
    ModelAlreadyExists,
    NotCommitted,
    Sha256Mismatch,
    SizeMismatch,
    UploadIdleTimeout,
    UploadTooLarge,
)
from metadata_svc.limits import check_weight
from metadata_svc.models import Claim, FileFacts, ModelEntry, NewModel
from metadata_svc.proto_mapping import uploaded_model
from metadata_svc.registry import Registry
from modelmanager.v1 import registry_pb2
from service_kit import get_logger
from service_kit.files import fsync_dir

log = get_logger("metadata_svc.uploads")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PartFile:
    """The `.part` file of one upload; write() runs in a thread and hashes as it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.head = b""
        self._digest = hashlib.sha256()
        # O_EXCL: a fresh name, never someone else's file.
        self._fh = open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb")

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        self._digest.update(chunk)

    def finish(self) -> str:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return self._digest.hexdigest()

    def discard(self) -> None:
        try:
            self._fh.close()
        except (OSError, ValueError):
            pass
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


async def _next_or_idle(stream: AsyncIterator[registry_pb2.UploadModelRequest], idle: float,
                        filename: str) -> registry_pb2.UploadModelRequest | None:
    """The next message, None at the end; DEADLINE_EXCEEDED when the client sends nothing for `idle` s."""
    try:
        return await asyncio.wait_for(anext(stream), idle)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise UploadIdleTimeout(
            f"{filename}: nothing arrived for {idle:g} s; the upload was abandoned and nothing was installed",
            metadata={"filename": filename, "idle_seconds": idle}) from None


async def receive_upload(registry: Registry, requests: AsyncIterator[registry_pb2.UploadModelRequest],
                         cancelled: Callable[[], bool] = lambda: False) -> ModelEntry:
    """`cancelled` is the call's own flag: grpc.aio ends a cancelled client stream like a clean
    half-close and cancels the handler a moment later, so the flag is read again before committing."""
    stream = aiter(requests)
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        raise MissingHeader("the upload stream was empty; the first message must be a header") from None
    if first.WhichOneof("payload") != "header":
        raise MissingHeader("the first message of an upload must be its header, not a chunk")
    header = first.header
    new = uploaded_model(header)
    filename = new.filename
    with contextlib.ExitStack() as holding:
        claim = holding.enter_context(registry.claim(filename, new.type))  # the name, until the entry is in
        check_weight(new.fields.recommended_weight or 1.0, filename)  # before the gigabytes arrive, not after
        limit = registry.settings.max_upload_bytes
        meta = {"filename": filename, "limit_bytes": limit}
        if header.total_size_bytes < 0:
            raise InvalidSize("total_size_bytes is negative", metadata=meta)
        if header.total_size_bytes > limit:
            raise UploadTooLarge(f"{filename}: {header.total_size_bytes} bytes is over the upload limit "
                                 f"of {limit} bytes", metadata=meta)
        expected_sha = header.expected_sha256.strip().lower()
        if expected_sha and not _SHA256.match(expected_sha):
            raise InvalidSha256("expected_sha256 is not 64 hex digits", metadata=meta)
        dest = claim.path
        if dest.exists():
            raise ModelAlreadyExists(f"a file {filename!r} is already in {dest.parent.name}/ (register it with "
                                     "CreateModel); nothing was overwritten", metadata={"filename": filename})
        announced = header.total_size_bytes or None
        committed = False

        handed_over = False
        part: PartFile | None = None
        part_path = dest.parent / f".upload-{uuid.uuid4().hex}.part"
        try:
            part = await asyncio.to_thread(PartFile, part_path)
            idle = registry.settings.upload_idle_timeout
            while (message := await _next_or_idle(stream, idle, filename)) is not None:
                payload = message.WhichOneof("payload")
                if payload == "commit":
                    committed = True
                    break  # nothing may follow; what would is not read
                if payload != "chunk":
                    raise DuplicateHeader("an upload has one header, then only chunks",
                                          metadata={"filename": filename})
                chunk = message.chunk
                if part.size + len(chunk) > limit:
                    raise UploadTooLarge(f"{filename}: more than {limit} bytes sent, the upload limit",
                                         metadata={**meta, "received_bytes": part.size + len(chunk)})
                if announced is not None and part.size + len(chunk) > announced:
                    # The client's own declaration is wrong: a bad request, not an exhausted resource.
                    raise _size_mismatch(filename, f"more than the {announced} bytes announced arrived",
                                         part.size + len(chunk), meta)
                await asyncio.to_thread(part.write, chunk)
                part.size += len(chunk)
                if claim.format == "safetensors" and len(part.head) < 8:
                    part.head += chunk[: 8 - len(part.head)]
                    if len(part.head) == 8:  # refuse junk early instead of after gigabytes
                        (length,) = struct.unpack("<Q", part.head)
                        insp.check_header_length(length, announced, filename)
            if header.require_commit and not committed:
                raise NotCommitted(f"{filename}: the upload ended without its commit message; nothing was "
                                   "installed", metadata={"filename": filename})
            if announced is not None and part.size != announced:
                raise _size_mismatch(filename, f"{part.size} bytes arrived, the header announced {announced}",
                                     part.size, meta)
            digest = await asyncio.to_thread(part.finish)
            if expected_sha and digest != expected_sha:
                raise Sha256Mismatch(f"{filename}: the bytes hash to {digest}, not the expected {expected_sha}",
                                     metadata={"filename": filename, "expected": expected_sha, "actual": digest})
            if cancelled():
                raise asyncio.CancelledError("the client cancelled the upload")
            # From here the upload completes even if the client goes away: it is all local work, and
            # stopping halfway through the rename and the index write would be worse. The claim goes
            # with it: the name stays held until the entry is in or the file is gone again.
            finalize = asyncio.ensure_future(_finalize(registry, new, claim, part, digest, holding.pop_all()))
            handed_over = True
            return await asyncio.shield(finalize)
        finally:
            if not handed_over:
                log.info("upload.discarded", filename=filename, received_bytes=part.size if part else 0)
                if part is not None:
                    part.discard()
                else:  # cancelled while the thread was creating it
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(part_path)


def _size_mismatch(filename: str, what: str, received: int, meta: dict[str, object]) -> SizeMismatch:
    return SizeMismatch(f"{filename}: {what}",
                        metadata={**meta, "received_bytes": received})


async def _finalize(registry: Registry, new: NewModel, claim: Claim, part: PartFile, digest: str,
                    holding: contextlib.ExitStack) -> ModelEntry:
    filename, dest = claim.filename, claim.path
    linked = False
    with holding:  # the claim, released when this ends
        try:
            # Named as the user's file, not the .part's.
            found = await asyncio.to_thread(insp.inspect_claimed, part.path, claim.format, claim.type, filename)
            try:
                # link, not rename: it fails if the name exists, so nothing is ever overwritten.
                await asyncio.to_thread(os.link, part.path, dest)
            except FileExistsError:
                raise ModelAlreadyExists(f"a file {filename!r} appeared in {dest.parent.name}/ during the upload; "
                                         "nothing was overwritten", metadata={"filename": filename}) from None
            linked = True
            part.discard()
            await asyncio.to_thread(fsync_dir, dest.parent)
            entry = await registry.add(new, FileFacts(size=part.size, inspection=found, sha256=digest))
            log.info("upload.done", filename=filename, size=part.size)
            return entry
        except BaseException:
            part.discard()
            if linked:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dest)  # fast, and the failure path must not leave a file behind
            raise
