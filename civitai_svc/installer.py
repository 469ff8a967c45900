"""Install one downloaded file: name it, keep it from colliding, move it into place, register it.

This is the job runner: it ties the downloader (bytes, hash) to the volume
(`loras/` or `checkpoints/`) and the registry (the one writer of the index).
Rules it keeps:
- the file name comes from Content-Disposition or the API's file name,
  sanitised (no path parts, traversal, control characters, leading dots);
- a name that is taken (on disk, in the registry, or by a running job) gets a
  suffix (`-{versionId}`, then `-{versionId}-2`...), never an overwrite: the
  final move is `link()` + `unlink()`, which fails instead of replacing;
- the `.part` file (`{final}.{job12}.part`) lives next to the destination
  (same filesystem, so the move is a rename) and is removed on every failure
  and on cancel, but kept when the service's shutdown interrupts the job: the
  next start continues it (`adopt`), and removes `.part` files no job owns;
- a file whose sha256 is already installed is not installed again.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from civitai_svc import errors as E
from civitai_svc.downloader import Downloader
from civitai_svc.jobs import Job, State
from civitai_svc.metadata import ensure_supported
from civitai_svc.previews import PreviewFetcher
from civitai_svc.registry_client import RegistryClient
from metadata_svc.limits import clip_model
from modelmanager.v1 import civitai_pb2, model_pb2
from service_kit.display import human_size
from service_kit.logs import get_logger

if TYPE_CHECKING:
    from civitai_svc.updates import Replacer

log = get_logger("civitai_svc.installer")

FOLDERS = {model_pb2.MODEL_TYPE_LORA: "loras", model_pb2.MODEL_TYPE_CHECKPOINT: "checkpoints",
           model_pb2.MODEL_TYPE_EMBEDDING: "embeddings", model_pb2.MODEL_TYPE_VAE: "vaes",
           model_pb2.MODEL_TYPE_UPSCALER: "upscalers"}
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
MAX_NAME_BYTES = 200  # the registry allows 255; leave room for a suffix
_RESERVED_CHARS = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_OUR_PART = re.compile(r"\.[0-9a-f]{12}\.part$")  # not the registry's `.upload-{uuid}.part`


@dataclass
class Plan:
    """What a job needs to run. The journal keeps all of it but the token (which stays in memory)."""

    info: civitai_pb2.CivitaiModelInfo
    file: civitai_pb2.CivitaiFile
    token: str | None
    # Reserved by the job when it first runs (its .part is `part_path(final, job id)`); kept across a restart.
    final: Path | None = None

    @property
    def keys(self) -> frozenset[str]:
        return file_keys(self.info.version_id, self.file)


def file_keys(version_id: int, file: civitai_pb2.CivitaiFile) -> frozenset[str]:
    """What names the bytes a job fetches: the file of the version, and its sha256 when CivitAI lists one
    (the same file may be reached by another version, or by hash)."""
    keys = {f"file:{version_id}:{file.id}"}
    if file.sha256:
        keys.add(f"sha256:{file.sha256.lower()}")
    return frozenset(keys)


def part_path(final: Path, job_id: str) -> Path:
    return final.with_name(f"{final.name}.{job_id[:12]}.part")


def sanitize_filename(name: str, fallback: str) -> str:
    """A safe single file name with a model extension; `fallback` when nothing usable is left."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # no path parts
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")  # no control/format characters
    name = _RESERVED_CHARS.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    name = re.sub(r"\.{2,}", ".", name)  # the registry refuses any name containing ".."
    if not name or name in (".", "..") or set(name) <= {".", " ", "_"}:
        name = fallback
    stem, ext = os.path.splitext(name)
    if ext.lower() not in MODEL_EXTENSIONS:
        stem, ext = name, ".safetensors"
    encoded = stem.encode()
    if len(encoded) + len(ext.encode()) > MAX_NAME_BYTES:
        stem = encoded[: MAX_NAME_BYTES - len(ext.encode())].decode(errors="ignore").rstrip()
    return (stem or "model") + ext.lower()


def _candidates(name: str, version_id: int) -> Iterator[str]:
    stem, ext = os.path.splitext(name)
    yield name
    tag = f"-{version_id}" if version_id else ""
    if tag:
        yield f"{stem}{tag}{ext}"
    for i in range(2, 10_000):
        yield f"{stem}{tag}-{i}{ext}"


def _on_disk(path: Path) -> bool:
    return os.path.lexists(path)  # a dangling symlink holds the name too


def _volume_error(exc: OSError, shown: str) -> E.errors.ServiceError:
    """An OSError on the volume as the client sees it: `shown` (e.g. `loras/水彩风格.safetensors`) and the
    OS's reason, never the server's absolute path or a `.part` name; those go to the log."""
    log.error("download.volume_error", file=shown, path=str(exc.filename or ""), errno=exc.errno, error=str(exc))
    code = errno.errorcode.get(exc.errno or 0, "")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return E.InsufficientDiskSpace(f"not enough free disk space to write {shown}", metadata={"file": shown})
    return E.VolumeWriteFailed(
        f"cannot write {shown} on the models volume: {exc.strerror or type(exc).__name__}",
        metadata={"file": shown, "errno": code},
    )


def _remove(path: Path) -> None:
    """Clean-up after a failure: an error here (a read-only volume answers EROFS even for a missing file)
    must not replace the job's own error."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("download.cleanup_failed", path=str(path), error=str(exc))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:60]


class Installer:
    def __init__(
        self,
        user_models_dir: Path,
        registry: RegistryClient,
        downloader: Downloader,
        *,
        disk_reserve_bytes: int = 256 * 1024 * 1024,
        previews: PreviewFetcher | None = None,
        replacer: Replacer | None = None,
    ) -> None:
        self.root = Path(user_models_dir)
        self.replacer = replacer  # None: a job's `replaces` is ignored
        self.registry = registry
        self.downloader = downloader
        self.previews = previews  # None: downloads keep no preview
        self.disk_reserve_bytes = disk_reserve_bytes
        self._reserved: set[Path] = set()  # final names held by running jobs
        self._reserving = asyncio.Lock()  # check-then-reserve must not interleave between jobs

    def folder(self, model_type: int) -> Path:
        folder = self.root / FOLDERS[model_type]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _volume_error(exc, f"{folder.name}/") from None
        return folder

    def check_space(self, folder: Path, needed: int) -> None:
        """Refuse a file that would not fit (with the reserve kept free), saying how much is missing."""
        free = shutil.disk_usage(folder).free
        missing = needed + self.disk_reserve_bytes - free
        if missing > 0:
            raise E.InsufficientDiskSpace(
                f"not enough free disk space in {folder.name}/: {human_size(missing)} missing; the file needs "
                f"{human_size(needed)} (+{human_size(self.disk_reserve_bytes)} kept free), "
                f"{human_size(free)} are free",
                metadata={"needed_bytes": needed, "free_bytes": free, "reserve_bytes": self.disk_reserve_bytes,
                          "missing_bytes": missing},
            )

    async def _taken(self, path: Path) -> bool:
        if path in self._reserved or _on_disk(path):
            return True
        return await self.registry.find_model(path.name, wait=True) is not None  # jobs only

    async def _reserve(self, folder: Path, name: str, version_id: int) -> Path:
        async with self._reserving:
            for candidate in _candidates(name, version_id):
                path = folder / candidate
                if not await self._taken(path):
                    self._reserved.add(path)
                    return path
        raise E.NoFreeFileName(
            f"no free file name for {name} in {folder.name}/: it and its -{version_id}, -{version_id}-2... forms "
            "are all taken; remove or rename some of those files",
            metadata={"filename": name, "folder": folder.name},
        )

    def _move(self, part: Path, final: Path) -> None:
        """Rename without ever replacing an existing file (link fails on an existing name)."""
        try:
            os.link(part, final)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise FileExistsError(final) from None
            if final.exists():  # filesystems without hard links
                raise FileExistsError(final) from None
            os.rename(part, final)
            return
        part.unlink()

    def entry(self, final: Path, info: civitai_pb2.CivitaiModelInfo, sha256: str) -> model_pb2.Model:
        short = info.name if len(info.name) <= 40 else info.name[:40].rstrip()
        model = model_pb2.Model(
            filename=final.name,
            type=info.model_type,
            display_name=info.name or final.stem,
            short_name=short or final.stem,
            source=model_pb2.MODEL_SOURCE_CIVITAI,
            trigger_words=list(info.trigger_words),
            recommended_weight=info.recommended_weight or 1.0,
            base_model=info.base_model,
            tags=list(info.tags),
            description=info.description,
            file_size_bytes=final.stat().st_size,
            civitai_model_id=info.model_id,
            civitai_version_id=info.version_id,
            civitai_url=info.civitai_url,
            sha256=sha256,
            # CivitAI has no flag for it; its creators tag negative embeddings so ("negative", "negative embedding").
            negative_embedding=info.model_type == model_pb2.MODEL_TYPE_EMBEDDING
            and any("negative" in t.lower() for t in info.tags),
        )
        # CivitAI's texts are not ours to refuse: cut them to the registry's limits, don't fail the install.
        clip_model(model)
        return model

    def adopt(self, proto: civitai_pb2.DownloadJob, plan: Plan) -> Path | None:
        """At start-up, a job from the journal: its final name is its own again before any new job runs,
        and its figures are those of the `.part` file it continues (returned; None when it has none yet).

        The file's length is what the last run wrote (the journal may be older, after a crash); a
        missing file means starting from 0. Network bytes: at least the bytes kept."""
        if plan.final is None:
            return None
        self._reserved.add(plan.final)
        part = part_path(plan.final, proto.id)
        try:
            kept = part.stat().st_size
        except FileNotFoundError:
            kept = 0
        proto.bytes_done = kept
        proto.bytes_transferred = max(proto.bytes_transferred, kept)
        return part

    def remove_stray_parts(self, keep: set[Path]) -> None:
        """At start-up: `.part` files of ours that no journal entry continues (their job's entry was never
        written, or was unreadable). Nobody else writes that name pattern."""
        for folder in FOLDERS.values():
            for path in (self.root / folder).glob("*.part"):
                if _OUR_PART.search(path.name) and path not in keep:
                    path.unlink(missing_ok=True)
                    log.info("download.stray_part_removed", file=str(path))

    async def run(self, job: Job) -> None:
        """The job runner: download, verify, place, register. Leaves nothing behind on failure or cancel;
        an interruption by shutdown keeps the `.part` file for the next start."""
        plan: Plan = job.plan
        info, chosen = plan.info, plan.file
        folder = self.folder(info.model_type)
        resumed = plan.final is not None  # reserved before a restart; its .part may hold bytes
        if plan.final is None:
            fallback = f"{_slug(info.name) or 'model'}_{info.version_id}.safetensors"
            plan.final = await self._reserve(folder, sanitize_filename(chosen.name, fallback), info.version_id)
        final = plan.final
        part = part_path(final, job.id)
        placed: Path | None = None
        reserved = [final]
        job.update(filename=final.name)  # journaled: the name is this job's, across restarts too
        try:
            if chosen.size_bytes:
                kept = job.proto.bytes_done if resumed else 0  # what adopt() found in the .part
                self.check_space(folder, max(0, chosen.size_bytes - kept))
            result = await self.downloader.fetch(
                version_id=info.version_id,
                file_id=chosen.id,
                part=part,
                token=plan.token,
                on_progress=job.progress,
                check_space=lambda needed: self.check_space(folder, needed),
                continue_part=resumed,
                transferred_before=job.proto.bytes_transferred,
                resumes_before=job.proto.resume_count,
            )
            job.update(state=State.DOWNLOAD_STATE_VERIFYING, bytes_per_second=0.0, eta_seconds=0.0)
            if chosen.sha256 and result.sha256 != chosen.sha256.lower():
                raise E.Sha256Mismatch(
                    f"the downloaded file's sha256 {result.sha256} differs from CivitAI's {chosen.sha256}; "
                    "the file was discarded",
                    metadata={"expected_sha256": chosen.sha256.lower(), "actual_sha256": result.sha256,
                              "size_bytes": result.size},
                )
            if not chosen.sha256:
                log.warning("download.unverified", job_id=job.id, version_id=info.version_id,
                            why="CivitAI lists no SHA256 for this file")
            existing = await self.registry.find_by_sha256(result.sha256, wait=True)
            if existing is not None:  # installed meanwhile by another job or an upload
                job.update(state=State.DOWNLOAD_STATE_SUCCEEDED, already_installed=True, model=existing,
                           filename=existing.filename)
                return
            # Content-Disposition is the name CivitAI means the file to have; use it when it differs.
            served = sanitize_filename(result.filename, final.name) if result.filename else ""
            if served and served != final.name and served != chosen.name:
                alternative = await self._reserve(folder, served, info.version_id)
                reserved.append(alternative)
                final = alternative
            while True:
                try:
                    self._move(part, final)
                    placed = final
                    break
                except FileExistsError:  # someone wrote that name since we reserved it
                    final = await self._reserve(folder, final.name, info.version_id)
                    reserved.append(final)
            job.update(state=State.DOWNLOAD_STATE_REGISTERING, filename=final.name)
            registering = asyncio.ensure_future(self._register(self.entry(final, info, result.sha256), info, job))
            try:
                model = await asyncio.shield(registering)
            except asyncio.CancelledError:
                # Too late to cancel: the file is verified and in place; finish registering it.
                model = await registering
            placed = None
            job.update(state=State.DOWNLOAD_STATE_SUCCEEDED, model=model, filename=model.filename or final.name)
            log.info("download.installed", job_id=job.id, filename=final.name, size=result.size,
                     resumes=result.resumes)
        except OSError as exc:  # writing the .part or moving it: say which file, not where the volume is
            if isinstance(exc, TimeoutError | ConnectionError):  # network, not the volume
                raise
            raise _volume_error(exc, f"{folder.name}/{final.name}") from None
        finally:
            if not job.interrupted:
                _remove(part)
            if placed is not None:
                _remove(placed)
            for path in reserved:
                self._reserved.discard(path)

    async def _register(self, entry: model_pb2.Model, info: civitai_pb2.CivitaiModelInfo, job: Job) -> model_pb2.Model:
        """CreateModel, then the version's first image as the model's preview (best-effort), then, for an
        update, the replaced entry's edits carried over and that entry deleted if asked (never raises: the
        old entry stays when something fails)."""
        model = await self.registry.create_model(entry)
        await self._keep_preview(model, info)
        if job.proto.replaces and self.replacer is not None:
            plan: Plan = job.plan
            try:
                done = await self.replacer.replace(job.proto.replaces, model, delete=job.proto.delete_replaced,
                                                   token=plan.token)
            except Exception:  # a bug here must not undo the registered download, nor touch the old entry more
                log.exception("download.replace_failed", job_id=job.id, replaces=job.proto.replaces)
                job.update(replace_note=f"{job.proto.replaces} was kept: replacing it failed (see the server log)")
                return model
            preview = model.preview
            model = done.model
            if preview.sha256 and not model.preview.sha256:
                model.preview.CopyFrom(preview)
            job.proto.carried_fields[:] = done.carried
            job.update(replaced_deleted=done.deleted, replace_note=done.note)
        return model

    async def _keep_preview(self, model: model_pb2.Model, info: civitai_pb2.CivitaiModelInfo) -> None:
        if self.previews is None:
            return
        try:
            preview = await self.previews.preview_of(info)
            if preview is None:
                return
            stored = await self.registry.set_preview(model.filename, preview.thumbnail.data,
                                                     nsfw_level=preview.image.nsfw_level, source="civitai")
        except E.errors.ServiceError as exc:  # the registry refused or is down: the download still succeeded
            log.warning("download.preview_not_stored", filename=model.filename, reason=exc.reason, error=exc.message)
            return
        except Exception:  # a bug here must not undo a registered download (run() removes a placed file)
            log.exception("download.preview_failed", filename=model.filename)
            return
        if stored is not None:
            model.preview.CopyFrom(stored)


async def prepare(
    installer: Installer, info: civitai_pb2.CivitaiModelInfo, token: str | None
) -> Plan | model_pb2.Model:
    """Checks made before a job exists, so StartDownload fails fast with a clear status.

    Returns the registered model when the same file (sha256) is installed already.
    """
    ensure_supported(info)
    if info.mode:
        raise E.ModelArchived(
            f"{info.name} is {info.mode.lower()} on CivitAI; its files cannot be downloaded",
            metadata={"model_id": info.model_id, "mode": info.mode},
        )
    chosen = info.file  # never training data (metadata.select_file); a named file was checked by the lookup
    if not chosen.id:
        raise E.NoModelFile(
            f"version {info.version_id} of {info.name} has no model file to install",
            metadata={"version_id": info.version_id},
        )
    if chosen.sha256:
        existing = await installer.registry.find_by_sha256(chosen.sha256)
        if existing is not None:
            return existing
    if chosen.size_bytes:
        installer.check_space(installer.folder(info.model_type), chosen.size_bytes)
    return Plan(info=info, file=chosen, token=token)
