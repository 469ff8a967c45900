"""The download journal: one durable file per unfinished job, so a restart of the service resumes it.

`{user_models_dir}/.downloads/{job_id}.json` holds what running the job again
needs: the public job (DownloadJob as JSON), CivitAI's model info and the chosen
file, and, once the job has reserved them, its final name and `.part` file
(relative to the volume). Never the token: a resumed job uses the service's own.

An entry is written when a job is created and when it changes state or stops,
not on progress ticks, and removed when the job has ended and its files are
dealt with. Each write is a whole new file (temp file, fsync, rename, fsync the
folder), so a crash leaves the old entry or the new one, never half of one.
Writes run in order on one thread: the event loop never waits for a disk.
An entry that cannot be read back is logged and moved aside, never fatal.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from civitai_svc.installer import FOLDERS, Plan, part_path
from civitai_svc.jobs import Job
from modelmanager.v1 import civitai_pb2
from service_kit.files import fsync_dir, write_atomic
from service_kit.logs import get_logger

log = get_logger("civitai_svc.job_journal")

FOLDER = ".downloads"
VERSION = 1
_JOB_ID = re.compile(r"[0-9a-f]{32}")


class CorruptEntry(Exception):
    """An entry that cannot be trusted (unreadable, not ours, or naming files outside the model folders)."""


class JobJournal:
    def __init__(self, user_models_dir: Path) -> None:
        self.root = Path(user_models_dir)
        self.folder = self.root / FOLDER
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="civitai-journal")
        self._closed = False

    # ------------------------------------------------------------------ writing

    def save(self, job: Job) -> None:
        """Record the job as it is now (its plan must be a Plan); the write happens in the background."""
        plan: Plan = job.plan
        data = {
            "version": VERSION,
            "job": json_format.MessageToDict(job.proto),
            "info": json_format.MessageToDict(plan.info),
            "file": json_format.MessageToDict(plan.file),
            "final": self._relative(plan.final),
            "part": self._relative(part_path(plan.final, job.id) if plan.final is not None else None),
        }
        self._submit(self._write, job.id, (json.dumps(data, indent=1) + "\n").encode())

    async def delete(self, job_id: str) -> None:
        """Remove the entry; returns once it is gone (after the writes asked for before)."""
        done = self._submit(self._remove, job_id)
        if done is not None:
            await asyncio.wrap_future(done)

    async def close(self) -> None:
        """Wait for the writes already asked for; later ones are dropped (the process is stopping)."""
        self._closed = True
        await asyncio.to_thread(self._writer.shutdown, wait=True)

    def _submit(self, fn: Any, *args: Any) -> Future[None] | None:
        if self._closed:
            log.warning("download_journal.closed", job_id=args[0], why="the service is stopping")
            return None
        return self._writer.submit(fn, *args)

    def _relative(self, path: Path | None) -> str:
        return str(path.relative_to(self.root)) if path is not None else ""

    def _write(self, job_id: str, data: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self.folder / f"{job_id}.json", data)
        except OSError as exc:
            # The download goes on; only a restart would not resume it.
            log.warning("download_journal.write_failed", job_id=job_id, error=str(exc))

    def _remove(self, job_id: str) -> None:
        try:
            (self.folder / f"{job_id}.json").unlink(missing_ok=True)
            if self.folder.is_dir():
                fsync_dir(self.folder)  # an ended job must not come back after a crash
        except OSError as exc:
            log.warning("download_journal.remove_failed", job_id=job_id, error=str(exc))

    # ------------------------------------------------------------------ reading (at start-up)

    def load(self) -> list[tuple[civitai_pb2.DownloadJob, Plan]]:
        """The unfinished jobs, oldest first, with plans that hold no token. Bad entries are moved aside."""
        if not self.folder.is_dir():
            return []
        for tmp in self.folder.glob("*.json.*.tmp"):  # a write that a crash cut short
            tmp.unlink(missing_ok=True)
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                found.append(self._read(path))
            except CorruptEntry as exc:
                aside = path.with_name(path.name + ".corrupt")
                log.warning("download_journal.corrupt", file=str(path), why=str(exc), moved_to=str(aside))
                try:
                    os.replace(path, aside)
                except OSError as err:  # a read-only folder must not stop the service either
                    log.warning("download_journal.not_moved", file=str(path), error=str(err))
        found.sort(key=lambda item: (item[0].create_time.seconds, item[0].create_time.nanos))
        return found

    def _read(self, path: Path) -> tuple[civitai_pb2.DownloadJob, Plan]:
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise CorruptEntry(f"not a version {VERSION} journal entry")
            job = json_format.ParseDict(data["job"], civitai_pb2.DownloadJob(), ignore_unknown_fields=True)
            info = json_format.ParseDict(data["info"], civitai_pb2.CivitaiModelInfo(), ignore_unknown_fields=True)
            chosen = json_format.ParseDict(data["file"], civitai_pb2.CivitaiFile(), ignore_unknown_fields=True)
            final, part = str(data.get("final") or ""), str(data.get("part") or "")
        except CorruptEntry:
            raise
        except (OSError, ValueError, KeyError, TypeError, json_format.ParseError) as exc:
            raise CorruptEntry(f"{type(exc).__name__}: {exc}") from None
        if not _JOB_ID.fullmatch(job.id) or path.stem != job.id:
            raise CorruptEntry(f"job id {job.id!r} does not match the file name")
        if info.model_type not in FOLDERS or not chosen.id:
            raise CorruptEntry("no supported model type or no file id")
        plan = Plan(info=info, file=chosen, token=None)
        if final or part:
            # Checked, because start-up deletes and continues these files: only our names in our folders.
            plan.final = self.root / FOLDERS[info.model_type] / Path(final).name
            if (final != self._relative(plan.final) or part != self._relative(part_path(plan.final, job.id))
                    or plan.final.name.startswith(".")):
                raise CorruptEntry(f"final {final!r} / part {part!r} are not this job's files")
        return job, plan

