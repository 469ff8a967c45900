"""The outputs folder: every Generate and Upscale result, as `<id>.png` with its parameters in `<id>.json`.

Ids are made here: the UTC time to the microsecond and 8 random hex digits
(`20250101T120000123456Z-1a2b3c4d`), so names sort by age and a client never
names a file, only an id that matches that pattern. Both files are written
atomically, the PNG first: a record exists once its JSON does (a crash in
between leaves only a PNG, which no listing shows). Listing reads the folder
each time, so files deleted by hand are gone from it too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference_svc.errors import InvalidOutputId, InvalidPageSize, InvalidPageToken, OutputNotFound
from service_kit import get_logger
from service_kit.files import fsync_dir, write_atomic

log = get_logger("inference_svc.outputs")

ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class OutputLora:
    filename: str
    weight: float
    hash: str = ""  # AutoV3


@dataclass(frozen=True)
class OutputParameters:
    """What made an output, enough to make it again."""

    prompt: str
    negative_prompt: str
    final_prompt: str
    injected_trigger_words: tuple[str, ...]
    steps: int
    guidance_scale: float
    seed: int
    scheduler: str
    checkpoint: str
    checkpoint_hash: str  # AutoV2
    loras: tuple[OutputLora, ...] = ()
    # The registry filenames of the VAE and the embeddings the job used; "" / () for the checkpoint's own VAE.
    vae: str = ""
    embeddings: tuple[str, ...] = ()
    # Upscale only.
    upscaler: str = ""  # the upscaler model of stage one; "" for Lanczos
    scale_factor: float = 0.0
    strength: float = 0.0
    tile_size: int = 0
    tile_overlap: int = 0
    controlnet: bool = False


@dataclass(frozen=True)
class SavedOutput:
    id: str
    kind: str  # "generate" or "upscale"
    created_at: datetime
    width: int
    height: int
    parameters: OutputParameters
    infotext: str
    size_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data

    def png_record(self) -> dict[str, Any]:
        """What the PNG's own JSON chunk holds: what made the image, and nothing of when or where it was
        saved (the same parameters make the same bytes)."""
        data = self.to_json()
        return {key: data[key] for key in ("kind", "width", "height", "parameters")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SavedOutput:
        """The record as written by to_json; ValueError (or KeyError/TypeError) on anything else."""
        raw = dict(data["parameters"])
        raw["loras"] = tuple(OutputLora(**lora) for lora in raw.get("loras", ()))
        raw["injected_trigger_words"] = tuple(raw.get("injected_trigger_words", ()))
        raw["embeddings"] = tuple(raw.get("embeddings", ()))
        return cls(
            id=str(data["id"]), kind=str(data["kind"]), created_at=datetime.fromisoformat(data["created_at"]),
            width=int(data["width"]), height=int(data["height"]), parameters=OutputParameters(**raw),
            infotext=str(data["infotext"]), size_bytes=int(data.get("size_bytes", 0)),
        )


def new_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"


def check_id(output_id: str) -> str:
    """An id this service could have made; anything else (a path, `..`, a glob) is refused here."""
    if not ID_PATTERN.fullmatch(output_id):
        raise InvalidOutputId("not an output id", metadata={"field": "id"})
    return output_id


class OutputStore:
    """The outputs folder. Its methods do file I/O: call them off the event loop."""

    def __init__(self, root: Path):
        self.root = root

    def new_record(self, kind: str, width: int, height: int, parameters: OutputParameters,
                   infotext: str) -> SavedOutput:
        """A record with a fresh id and time, not yet saved (its JSON also goes into the PNG)."""
        now = datetime.now(UTC)
        return SavedOutput(new_id(now), kind, now, width, height, parameters, infotext)

    def save(self, record: SavedOutput, png: bytes) -> SavedOutput:
        self.root.mkdir(parents=True, exist_ok=True)
        saved = dataclasses.replace(record, size_bytes=len(png))
        write_atomic(self._png(saved.id), png)
        write_atomic(self._json(saved.id), json.dumps(saved.to_json(), ensure_ascii=False, indent=1).encode())
        return saved

    def page(self, page_size: int, page_token: str) -> tuple[list[SavedOutput], str]:
        """One page, newest first, and the token of the next page ("" on the last)."""
        if page_size < 0:
            raise InvalidPageSize(f"page_size {page_size} is negative", metadata={"page_size": page_size})
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        if page_token and not ID_PATTERN.fullmatch(page_token):
            raise InvalidPageToken("page_token was not issued by ListOutputs", metadata={"field": "page_token"})
        ids = sorted((i for i in self._ids() if not page_token or i < page_token), reverse=True)
        page: list[SavedOutput] = []
        for output_id in ids:
            if len(page) == size:
                # The token is the last id shown: the next page starts below it, whatever was added or
                # deleted meanwhile.
                return page, page[-1].id
            record = self._read_record(output_id)
            if record is not None:
                page.append(record)
        return page, ""

    def get(self, output_id: str, *, with_image: bool = True) -> tuple[SavedOutput, bytes]:
        check_id(output_id)
        record = self._read_record(output_id)
        if record is None:
            raise OutputNotFound(f"no output {output_id}", metadata={"id": output_id})
        if not with_image:
            return record, b""
        try:
            return record, _read(self._png(output_id))
        except OSError as exc:  # gone since the record was read, or replaced by a link
            log.warning("output.image_unreadable", id=output_id, error=str(exc)[:200])
            raise OutputNotFound(f"output {output_id} has no image", metadata={"id": output_id}) from None

    def delete(self, output_id: str) -> None:
        check_id(output_id)
        try:
            self._json(output_id).unlink()  # the record goes first: a half-deleted output is not listed
        except FileNotFoundError:
            raise OutputNotFound(f"no output {output_id}", metadata={"id": output_id}) from None
        self._png(output_id).unlink(missing_ok=True)
        fsync_dir(self.root)

    def _png(self, output_id: str) -> Path:
        return self.root / f"{output_id}.png"

    def _json(self, output_id: str) -> Path:
        return self.root / f"{output_id}.json"

    def _ids(self) -> list[str]:
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        with entries:
            return [e.name[:-5] for e in entries if e.name.endswith(".json") and ID_PATTERN.fullmatch(e.name[:-5])]

    def _read_record(self, output_id: str) -> SavedOutput | None:
        """The record, or None when it is gone or unreadable (logged: someone edited the folder)."""
        try:
            record = SavedOutput.from_json(json.loads(_read(self._json(output_id))))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("output.unreadable", id=output_id, error=str(exc)[:200])
            return None
        return dataclasses.replace(record, id=output_id)


def _read(path: Path) -> bytes:
    # Not through a symlink: the folder holds only what this service wrote.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()
