"""A fake CivitAI on 127.0.0.1 for tests, demos and benchmarks: two real HTTP servers.

The *API* server answers like civitai.com's public REST API (v1): the
metadata endpoints from fixtures shaped like the real API, and
`/api/download/models/{versionId}` with a **307** to the second, *storage*,
server, which (like Cloudflare R2) **refuses any Authorization header with a
400**, supports `Range` (206/416) and sends `Content-Disposition`. Both run in
background threads (sendfile for file-backed bodies), so they work from sync
code and from asyncio tests alike, and are fast enough to benchmark against.

Quick start
-----------
    from devtools.fake_civitai import FakeCivitai

    with FakeCivitai(token="s3cret") as fake:            # or: fake = FakeCivitai(); ...; fake.close()
        lora = fake.add_lora(name="Soft Watercolor", data=b"...", trained_words=["wtrclr"])
        ckpt = fake.add_checkpoint(name="DreamForge XL", path=Path("big.safetensors"))
        fake.base_url           # "http://127.0.0.1:PORT": set CIVITAI_BASE_URL to this
        lora.model_id, lora.version_id, lora.file_id, lora.sha256, lora.url   # ids of what was added
        async with FakeCivitai() as fake: ...             # also an async context manager

Served endpoints (API server)
-----------------------------
`GET /api/v1/models/{id}`, `/api/v1/model-versions/{id}`, `/api/v1/model-versions/by-hash/{hash}`
(any hash type, case-insensitive), `/api/v1/models?query=&types=&baseModels=&limit=&cursor=&sort=&nsfw=`
(cursor paging, `metadata.nextCursor`/`nextPage`), `/api/download/models/{versionId}?fileId=&type=&format=`
(307 to storage), `/login` and `/model-versions/{id}` (HTML pages, what browsers get redirected to).

Adding models
-------------
``add_lora(name=..., data=b"" | path=Path, trained_words=[], base_model="Illustrious", tags=[],
           description=None, civitai_type="LORA", model_id=None, version_id=None, extra_files=(),
           nsfw=False) -> FakeModel``
``add_checkpoint(name=..., data=... | path=..., base_model="SDXL 1.0", ...) -> FakeModel``
    Build a realistic model JSON (shaped like real /api/v1/models responses) around the given bytes or file:
    one version, a primary SafeTensor file with real SHA256/AutoV2/CRC32 hashes and exact sizeKB, a
    `Training Data` zip, a preview image. Files given as `data` are kept in memory; as `path`,
    served with sendfile (nothing read into memory; the sha256 is computed once when added).
``add_version(model_id, name=..., data=.../path=..., trained_words=...) -> FakeModel``
    A newer version of an existing model (becomes `modelVersions[0]`; for update checks).
``add_model(model_json: dict, files: {file_id: bytes | Path}) -> None``
    Any model JSON shaped like `GET /api/v1/models/{id}` (e.g. a reference sample as is);
    `files` maps each file id to its content. Keys may be missing, as in the real API.
``make_safetensors(kind="lora"|"checkpoint", payload_bytes=4096, seed=0) -> bytes`` and
``write_safetensors(path, kind, payload_bytes, seed)``: valid safetensors files with kohya LoRA
    or SDXL checkpoint key names (so a registry that inspects headers accepts them), any size.

Failures and quirks (all thread-safe; `times` counts requests, then the behaviour ends)
------------------------------------------------------------------------------------
``require_token(token | None)``: downloads need `Authorization: Bearer <token>` or `?token=`; otherwise
    401 JSON (non-browser UA) or 307 to `/login?...reason=download-auth` (browser UA). Also `token=` ctor arg.
``fail(route, status, times=1, body=None, headers=None, key=None)``: the next `times` requests to
    `route` answer `status` with `body` (dict -> JSON, str -> text). Routes: "model", "version",
    "by-hash", "search", "download", "storage"; `key` limits it to one id (model/version/file id).
``clear_failures()``: forget pending fail/rate_limit/unavailable rules, connection drops and stalls.
``rate_limit(route, times=1, retry_after="1")``: 429 with `Retry-After` (seconds or an HTTP-date).
``unavailable(route, times=1, retry_after=None)``: 503.
``early_access(version_id, deadline="2030-01-01T00:00:00.000Z")``: download 403 `{"error":"Early Access",
    "deadline":...}` (browser UA: 307 to the model page), and `earlyAccessDeadline` in the metadata.
``forbid(version_id)``: 403 "You do not have access to download this file".
``archive(model_id)``: `mode: "Archived"`, files removed from metadata, download 410.
``drop_connection(file_id, after_bytes, times=1)``: the storage server sends the full
    Content-Length, then closes the socket after `after_bytes` bytes. The signed URL of a cut
    transfer is expired afterwards (403), so a client must ask the download endpoint again.
``stall(file_id, after_bytes, times=1)``: the storage server sends the full Content-Length, then
    `after_bytes` bytes of the body, then nothing until the client hangs up (e.g. to stop a service
    mid-transfer at a known byte; `bytes_served` counts exactly those bytes).
``corrupt(file_id)``: serve bytes whose sha256 does not match the metadata (one byte flipped).
``throttle(file_id, bytes_per_second)``: send that file slowly (0 = full speed), e.g. to cancel mid-way.
``name_forms(file_id, url="utf8", header="rfc5987", name=None)``: how the name travels (defaults shown).
    `url`: the signed storage URL's `response-content-disposition` query value, `header`: the storage's
    Content-Disposition. "utf8": `attachment; filename="水彩风格.safetensors"` (UTF-8, percent-encoded in the
    URL, raw bytes in the header); "rfc5987": an ASCII `filename` plus `filename*=UTF-8''%E6...`;
    "rfc5987-only": `filename*` alone; in `url` only, "rfc5987-once": `filename*` whose escapes are not
    encoded again (`...filename*%3DUTF-8''%E6...`, as some signers write it); None: left out. `name`:
    serve the file under another name than the API's (CivitAI's storage name wins).
``serve_html(file_id, content_type="text/html")``: the storage answers 200 with a Cloudflare-style HTML
    page instead of the file (pass content_type="application/octet-stream" for a lying header).
Browser user agents (mozilla, chrome, safari, firefox, opera, edge) get text/HTML error pages
from the download endpoint, as the real one does.

Inspection
----------
``requests``: list of `Recorded(server, method, path, headers)` (headers lower-cased), both servers.
``storage_requests()``, ``download_requests()``, ``bytes_served(file_id)``: bytes of that file sent
    by the storage server (including partial and cut transfers), ``reset_counters()``.
``base_url`` (API), ``storage_url``, ``close()``.

Command line (demo)
-------------------
``python -m devtools.fake_civitai [--port 8765] [--token T] [--dir DIR]`` serves a fixture set: a
LoRA and a checkpoint written as files under DIR (a temp folder by default), and prints the
models' ids and references.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["FakeCivitai", "FakeModel", "Recorded", "make_safetensors", "write_safetensors"]

_BROWSER = re.compile(r"mozilla|chrome|safari|firefox|opera|edge", re.IGNORECASE)
_SEND_BLOCK = 8 * 1024 * 1024

CLOUDFLARE_HTML = (
    b"<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head>"
    b"<body><h1>Checking your browser before accessing civitai.com</h1></body></html>\n"
)


# --------------------------------------------------------------------------- safetensors files


def _safetensors_header(kind: str, payload_bytes: int) -> tuple[bytes, int]:
    if kind == "lora":
        names = [
            ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight", [4, 16]),
            ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight", [16, 4]),
            ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha", []),
            ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", [4, 16]),
            ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", [16, 4]),
            ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha", []),
            ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", [4, 16]),
            ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", [16, 4]),
            ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj.alpha", []),
        ]
        bulk = "lora_unet_output_blocks_0_1_transformer_blocks_0_ff_net_2.lora_down.weight"
        meta = {"ss_network_module": "networks.lora", "ss_base_model_version": "sdxl_base_v1-0"}
    else:
        names = [
            ("model.diffusion_model.input_blocks.0.0.weight", [4, 4]),
            ("model.diffusion_model.label_emb.0.0.weight", [4, 4]),
            ("model.diffusion_model.out.2.weight", [4, 4]),
            ("conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight", [4, 4]),
            ("conditioner.embedders.1.model.token_embedding.weight", [4, 4]),
            ("conditioner.embedders.1.model.text_projection", [4, 4]),
            ("first_stage_model.decoder.conv_in.weight", [4, 4]),
            ("first_stage_model.encoder.conv_in.weight", [4, 4]),
        ]
        bulk = "model.diffusion_model.output_blocks.0.0.in_layers.2.weight"
        meta = {"modelspec.architecture": "stable-diffusion-xl-v1-base"}
    header: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    for name, shape in names:
        count = 1
        for dim in shape:
            count *= dim
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + 2 * count]}
        offset += 2 * count
    bulk_len = max(2, payload_bytes - offset)
    bulk_len -= bulk_len % 2
    header[bulk] = {"dtype": "F16", "shape": [bulk_len // 2], "data_offsets": [offset, offset + bulk_len]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # 8-byte alignment, as safetensors writes it
    return struct.pack("<Q", len(raw)) + raw, offset + bulk_len


def make_safetensors(kind: str = "lora", payload_bytes: int = 4096, seed: int = 0) -> bytes:
    """A valid safetensors file (kohya LoRA or SDXL checkpoint key names) with random weights."""
    header, total = _safetensors_header(kind, payload_bytes)
    return header + random.Random(seed).randbytes(total)


def write_safetensors(path: str | Path, kind: str = "checkpoint", payload_bytes: int = 1 << 20, seed: int = 0) -> Path:
    """Like make_safetensors, written to `path` in 8 MiB blocks (for files of any size)."""
    path = Path(path)
    header, total = _safetensors_header(kind, payload_bytes)
    rng = random.Random(seed)
    with open(path, "wb") as out:
        out.write(header)
        left = total
        while left:
            n = min(left, _SEND_BLOCK)
            out.write(rng.randbytes(n))
            left -= n
    return path


# --------------------------------------------------------------------------- model store


@dataclass
class FakeModel:
    """What add_lora/add_checkpoint/add_version added."""

    model_id: int
    version_id: int
    file_id: int
    sha256: str  # lowercase hex
    size: int
    name: str
    filename: str
    base_url: str
    json: dict[str, Any]

    @property
    def url(self) -> str:
        """The model page URL with the version, as a user would paste it."""
        return f"https://civitai.com/models/{self.model_id}?modelVersionId={self.version_id}"


@dataclass
class _File:
    content: bytes | Path
    size: int
    name: str
    corrupt: bool = False
    html: str | None = None  # content type of an HTML page served instead
    rate: float = 0.0  # bytes per second when throttled, 0 = full speed
    # How the name travels in the signed URL and in the storage's header (see name_forms()).
    url_form: str | None = "utf8"
    header_form: str | None = "rfc5987"
    served_name: str | None = None  # the storage's name, when it differs from the API's

    @property
    def disposition_name(self) -> str:
        return self.served_name or self.name


@dataclass
class _Rule:
    route: str
    status: int
    times: int
    body: Any
    headers: dict[str, str]
    key: int | None


@dataclass
class Recorded:
    server: str  # "api" or "storage"
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


def _hashes(sha: str, crc: int) -> dict[str, str]:
    upper = sha.upper()
    return {
        "AutoV1": upper[:8],
        "AutoV2": upper[:10],
        "SHA256": upper,
        "CRC32": f"{crc:08X}",
        "BLAKE3": hashlib.blake2s(bytes.fromhex(sha)).hexdigest().upper(),
        "AutoV3": upper[-12:],
    }


def _digest(content: bytes | Path) -> tuple[str, int, int]:
    """(sha256, crc32, size) of bytes or of a file, read in blocks."""
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest(), zlib.crc32(content), len(content)
    sha, crc, size = hashlib.sha256(), 0, 0
    with open(content, "rb") as f:
        while block := f.read(_SEND_BLOCK):
            sha.update(block)
            crc = zlib.crc32(block, crc)
            size += len(block)
    return sha.hexdigest(), crc, size


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class FakeCivitai:
    """The API server and the storage server; see the module docstring for the API."""

    def __init__(self, *, token: str | None = None, host: str = "127.0.0.1", port: int = 0, storage_port: int = 0):
        self._lock = threading.RLock()
        self._models: dict[int, dict[str, Any]] = {}
        self._files: dict[int, _File] = {}
        self._rules: list[_Rule] = []
        self._drops: dict[int, list[int]] = {}  # file id -> [after_bytes, times]
        self._stalls: dict[int, list[int]] = {}  # file id -> [after_bytes, times]
        self._closed = threading.Event()
        self._early: dict[int, str] = {}
        self._forbidden: set[int] = set()
        self._signatures: dict[str, int] = {}  # valid storage signatures -> file id
        self._served: dict[int, int] = {}
        self._ids = iter(range(100_001, 2_000_000_000, 7919))
        self.token = token
        self.requests: list[Recorded] = []
        self._api = _Server((host, port), _ApiHandler, self)
        self._storage = _Server((host, storage_port), _StorageHandler, self)
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=f"fake-civitai-{n}")
            for n, s in (("api", self._api), ("storage", self._storage))
        ]
        for thread in self._threads:
            thread.start()

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self._api.server_address[0]}:{self._api.server_address[1]}"

    @property
    def storage_url(self) -> str:
        return f"http://{self._storage.server_address[0]}:{self._storage.server_address[1]}"

    def close(self) -> None:
        self._closed.set()  # ends stalled transfers
        for server in (self._api, self._storage):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeCivitai:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> FakeCivitai:
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    # ----------------------------------------------------------------- building models

    def _next_id(self) -> int:
        return next(self._ids)

    def add_model(self, model_json: dict[str, Any], files: dict[int, bytes | Path] | None = None) -> None:
        """Serve `model_json` (shaped like GET /api/v1/models/{id}); `files` maps file ids to content."""
        with self._lock:
            model = copy.deepcopy(model_json)
            self._models[int(model["id"])] = model
            for version in model.get("modelVersions") or []:
                for f in version.get("files") or []:
                    if files and f["id"] in files:
                        content = files[f["id"]]
                        size = len(content) if isinstance(content, bytes) else Path(content).stat().st_size
                        self._files[f["id"]] = _File(content, size, f.get("name") or f"file-{f['id']}")

    def _file_json(self, file_id: int, version_id: int, name: str, content: bytes | Path) -> tuple[dict, str, int]:
        sha, crc, size = _digest(content)
        return (
            {
                "id": file_id,
                "sizeKB": round(size / 1024, 2),  # rounded, as the real API does
                "name": name,
                "overrideName": None,
                "type": "Model",
                "pickleScanResult": "Success",
                "pickleScanMessage": "No Pickle imports",
                "virusScanResult": "Success",
                "virusScanMessage": None,
                "scannedAt": _now_iso(),
                "hashes": _hashes(sha, crc),
                "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
                "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
                "primary": True,
            },
            sha,
            size,
        )

    def _version_json(
        self,
        *,
        version_id: int,
        name: str,
        base_model: str,
        trained_words: Iterable[str],
        description: str | None,
        files: list[dict[str, Any]],
        index: int = 0,
    ) -> dict[str, Any]:
        version: dict[str, Any] = {
            "id": version_id,
            "index": index,
            "name": name,
            "baseModel": base_model,
            "baseModelType": "Standard",
            "createdAt": _now_iso(),
            "publishedAt": _now_iso(),
            "status": "Published",
            "availability": "Public",
            "nsfwLevel": 1,
            "covered": False,
            "stats": {"downloadCount": 12, "thumbsUpCount": 3, "thumbsDownCount": 0},
            "files": files,
            "images": [
                {
                    "url": f"https://image.civitai.com/fake/{version_id}/original=true/{version_id}.jpeg",
                    "nsfwLevel": 1,
                    "width": 832,
                    "height": 1216,
                    "hash": "UFHLe]~q00xu_3RjM{of00IU?bWB",
                    "type": "image",
                    "minor": False,
                    "poi": False,
                    "hasMeta": True,
                    "hasPositivePrompt": True,
                    "onSite": False,
                    "remixOfId": None,
                }
            ],
            "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
        }
        words = list(trained_words)
        if words:  # removeEmpty(): empty arrays and nulls are dropped, not sent
            version["trainedWords"] = words
        if description:
            version["description"] = description
        return version

    def _add(
        self,
        civitai_type: str,
        *,
        name: str,
        data: bytes | None,
        path: str | Path | None,
        base_model: str,
        trained_words: Iterable[str],
        tags: Iterable[str],
        description: str | None,
        model_id: int | None,
        version_id: int | None,
        version_name: str,
        filename: str | None,
        nsfw: bool,
        with_training_data: bool,
    ) -> FakeModel:
        if (data is None) == (path is None):
            raise ValueError("give exactly one of data= or path=")
        content: bytes | Path = data if data is not None else Path(path)  # type: ignore[arg-type]
        with self._lock:
            model_id = model_id or self._next_id()
            version_id = version_id or self._next_id()
            file_id = self._next_id()
            filename = filename or (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() + f"_{version_name}.safetensors")
            file_json, sha, size = self._file_json(file_id, version_id, filename, content)
            files = [file_json]
            if with_training_data:
                training_id = self._next_id()
                training = b"PK\x05\x06" + b"\x00" * 18  # an empty zip
                tj, _, _ = self._file_json(training_id, version_id, f"{model_id}_training_data.zip", training)
                tj.update(type="Training Data", metadata={"format": "Other"})
                tj.pop("primary")  # /models omits `primary` on non-primary files
                tj["downloadUrl"] = f"{self.base_url}/api/download/models/{version_id}?type=Training%20Data"
                files.append(tj)
                self._files[training_id] = _File(training, len(training), tj["name"])
            version = self._version_json(
                version_id=version_id,
                name=version_name,
                base_model=base_model,
                trained_words=trained_words,
                description=description,
                files=files,
            )
            model = {
                "id": model_id,
                "name": name,
                "description": f"<p>{name}: a fake model for tests.</p>",
                "allowNoCredit": True,
                "allowCommercialUse": "{Image,RentCivit}",
                "allowDerivatives": True,
                "allowDifferentLicense": False,
                "type": civitai_type,
                "minor": False,
                "sfwOnly": False,
                "poi": False,
                "nsfw": nsfw,
                "nsfwLevel": 1,
                "availability": "Public",
                "supportsGeneration": False,
                "stats": {"downloadCount": 12, "thumbsUpCount": 3, "thumbsDownCount": 0, "commentCount": 0,
                          "tippedAmountCount": None},
                "creator": {"username": "fakeforge", "image": None},
                "tags": list(tags),
                "modelVersions": [version],
            }
            self._models[model_id] = model
            self._files[file_id] = _File(content, size, filename)
            return FakeModel(model_id, version_id, file_id, sha, size, name, filename, self.base_url, model)

    def add_lora(
        self,
        *,
        name: str = "Soft Watercolor Style",
        data: bytes | None = None,
        path: str | Path | None = None,
        trained_words: Iterable[str] = ("wtrclr style",),
        base_model: str = "Illustrious",
        tags: Iterable[str] = ("style", "watercolor"),
        description: str | None = "<p>Recommended weight 0.6-0.8.</p>",
        civitai_type: str = "LORA",
        model_id: int | None = None,
        version_id: int | None = None,
        version_name: str = "v1.0",
        filename: str | None = None,
        nsfw: bool = False,
        with_training_data: bool = True,
    ) -> FakeModel:
        """A LoRA (or LoCon/DoRA/any type via civitai_type) around `data` or the file at `path`."""
        if data is None and path is None:
            data = make_safetensors("lora", 4096, seed=len(self._models))
        return self._add(
            civitai_type, name=name, data=data, path=path, base_model=base_model, trained_words=trained_words,
            tags=tags, description=description, model_id=model_id, version_id=version_id,
            version_name=version_name, filename=filename, nsfw=nsfw, with_training_data=with_training_data,
        )

    def add_checkpoint(
        self,
        *,
        name: str = "DreamForge XL",
        data: bytes | None = None,
        path: str | Path | None = None,
        base_model: str = "SDXL 1.0",
        tags: Iterable[str] = ("base model", "photorealistic"),
        description: str | None = "<p>Rebalanced skin tones; baked SDXL VAE.</p>",
        model_id: int | None = None,
        version_id: int | None = None,
        version_name: str = "v1.0",
        filename: str | None = None,
        nsfw: bool = False,
    ) -> FakeModel:
        """An SDXL checkpoint around `data` or the file at `path`."""
        if data is None and path is None:
            data = make_safetensors("checkpoint", 8192, seed=len(self._models))
        return self._add(
            "Checkpoint", name=name, data=data, path=path, base_model=base_model, trained_words=(), tags=tags,
            description=description, model_id=model_id, version_id=version_id, version_name=version_name,
            filename=filename, nsfw=nsfw, with_training_data=False,
        )

    def add_version(
        self,
        model_id: int,
        *,
        version_name: str = "v2.0",
        data: bytes | None = None,
        path: str | Path | None = None,
        trained_words: Iterable[str] = (),
        filename: str | None = None,
    ) -> FakeModel:
        """A newer version of `model_id`: it becomes modelVersions[0]."""
        with self._lock:
            model = self._models[model_id]
            kind = "checkpoint" if model["type"] == "Checkpoint" else "lora"
            if data is None and path is None:
                data = make_safetensors(kind, 4096, seed=self._next_id())
            content: bytes | Path = data if data is not None else Path(path)  # type: ignore[arg-type]
            version_id, file_id = self._next_id(), self._next_id()
            filename = filename or re.sub(r"[^A-Za-z0-9]+", "_", model["name"]).lower() + f"_{version_name}.safetensors"
            file_json, sha, size = self._file_json(file_id, version_id, filename, content)
            previous = model.get("modelVersions") or []
            base_model = previous[0].get("baseModel", "SDXL 1.0") if previous else "SDXL 1.0"
            version = self._version_json(
                version_id=version_id, name=version_name, base_model=base_model, trained_words=trained_words,
                description=None, files=[file_json],
            )
            for v in previous:
                v["index"] = v.get("index", 0) + 1
            model["modelVersions"] = [version, *previous]
            self._files[file_id] = _File(content, size, filename)
            return FakeModel(model_id, version_id, file_id, sha, size, model["name"], filename, self.base_url, model)

    # ----------------------------------------------------------------- behaviour switches

    def require_token(self, token: str | None) -> None:
        self.token = token

    def fail(
        self,
        route: str,
        status: int,
        *,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        key: int | None = None,
    ) -> None:
        if route not in ("model", "version", "by-hash", "search", "download", "storage"):
            raise ValueError(f"unknown route {route!r}")
        with self._lock:
            self._rules.append(_Rule(route, status, times, body, dict(headers or {}), key))

    def clear_failures(self) -> None:
        """Forget every pending fail()/rate_limit()/unavailable() rule and connection drop."""
        with self._lock:
            self._rules.clear()
            self._drops.clear()
            self._stalls.clear()

    def rate_limit(self, route: str, *, times: int = 1, retry_after: str | None = "1", key: int | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.fail(route, 429, times=times, key=key, headers=headers,
                  body={"error": "We've noticed an unusual amount of downloading from your account. "
                                 "Contact support@civitai.com or come back later."})

    def unavailable(self, route: str, *, times: int = 1, retry_after: str | None = None, key: int | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.fail(route, 503, times=times, key=key, headers=headers,
                  body={"error": "Model search is temporarily overloaded — please retry."})

    def early_access(self, version_id: int, deadline: str = "2030-01-01T00:00:00.000Z") -> None:
        with self._lock:
            self._early[version_id] = deadline
            for model in self._models.values():
                for v in model.get("modelVersions") or []:
                    if v["id"] == version_id:
                        v["earlyAccessDeadline"] = deadline
                        v["availability"] = "EarlyAccess"

    def forbid(self, version_id: int) -> None:
        with self._lock:
            self._forbidden.add(version_id)

    def archive(self, model_id: int) -> None:
        with self._lock:
            model = self._models[model_id]
            model["mode"] = "Archived"
            for v in model.get("modelVersions") or []:
                v.pop("files", None)
                v.pop("downloadUrl", None)

    def drop_connection(self, file_id: int, after_bytes: int, *, times: int = 1) -> None:
        with self._lock:
            self._drops[file_id] = [after_bytes, times]

    def stall(self, file_id: int, after_bytes: int, *, times: int = 1) -> None:
        """Send `after_bytes` of the body, then hold the connection silent until the client hangs up."""
        with self._lock:
            self._stalls[file_id] = [after_bytes, times]

    def corrupt(self, file_id: int, on: bool = True) -> None:
        with self._lock:
            self._files[file_id].corrupt = on

    def throttle(self, file_id: int, bytes_per_second: float) -> None:
        """Send this file at most this fast (0: full speed again), e.g. to cancel mid-download."""
        with self._lock:
            self._files[file_id].rate = bytes_per_second

    def name_forms(self, file_id: int, *, url: str | None = "utf8", header: str | None = "rfc5987",
                   name: str | None = None) -> None:
        """How the file's name is written in the signed URL and the storage's header (module docstring)."""
        for form in (url, header):
            if form not in (None, "utf8", "rfc5987", "rfc5987-only", "rfc5987-once"):
                raise ValueError(f"unknown name form {form!r}")
        if header == "rfc5987-once":
            raise ValueError("rfc5987-once is a form of the URL only")
        with self._lock:
            stored = self._files[file_id]
            stored.url_form, stored.header_form, stored.served_name = url, header, name

    def serve_html(self, file_id: int, content_type: str | None = "text/html; charset=utf-8") -> None:
        with self._lock:
            self._files[file_id].html = content_type

    # ----------------------------------------------------------------- inspection

    def storage_requests(self) -> list[Recorded]:
        return [r for r in list(self.requests) if r.server == "storage"]

    def download_requests(self) -> list[Recorded]:
        return [r for r in list(self.requests) if r.server == "api" and r.path.startswith("/api/download/")]

    def bytes_served(self, file_id: int) -> int:
        with self._lock:
            return self._served.get(file_id, 0)

    def reset_counters(self) -> None:
        with self._lock:
            self._served.clear()
            self.requests.clear()

    # ----------------------------------------------------------------- internals used by the handlers

    def _take_rule(self, route: str, key: int | None) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.route == route and rule.times > 0 and (rule.key is None or rule.key == key):
                    rule.times -= 1
                    return rule
            return None

    def _find_version(self, version_id: int) -> tuple[dict, dict] | None:
        for model in self._models.values():
            for version in model.get("modelVersions") or []:
                if version["id"] == version_id:
                    return model, version
        return None

    def _version_response(self, model: dict, version: dict) -> dict[str, Any]:
        """GET /api/v1/model-versions/{id}: the version plus `model`, `air`, primary always a bool."""
        eco = "sdxl"
        air_type = {"LORA": "lora", "LoCon": "lycoris", "DoRA": "dora", "Checkpoint": "checkpoint"}.get(
            model.get("type", ""), "unknown")
        out = {
            "id": version["id"],
            "modelId": model["id"],
            "name": version.get("name"),
            "nsfwLevel": version.get("nsfwLevel", 1),
            "createdAt": version.get("createdAt"),
            "updatedAt": version.get("publishedAt"),
            "status": "Published",
            "publishedAt": version.get("publishedAt"),
            "trainedWords": version.get("trainedWords", []),
            "trainingStatus": None,
            "trainingDetails": None,
            "baseModel": version.get("baseModel"),
            "baseModelType": version.get("baseModelType"),
            "description": version.get("description"),
            "uploadType": "Created",
            "usageControl": "Download",
            "licensingFee": None,
            "paidAccess": None,
            "air": f"urn:air:{eco}:{air_type}:civitai:{model['id']}@{version['id']}",
            "stats": {"downloadCount": 12, "thumbsUpCount": 3},
            "model": {"name": model.get("name"), "type": model.get("type"), "nsfw": model.get("nsfw", False),
                      "poi": False, **({"mode": model["mode"]} if model.get("mode") else {})},
            "files": [{**f, "primary": bool(f.get("primary"))} for f in version.get("files") or []],
            "images": version.get("images", []),
        }
        if version.get("downloadUrl"):
            out["downloadUrl"] = version["downloadUrl"]
        if version.get("earlyAccessDeadline"):
            out["earlyAccessEndsAt"] = version["earlyAccessDeadline"]
        return out

    def _by_hash(self, value: str) -> tuple[dict, dict] | None:
        value = value.upper()
        for model in self._models.values():
            for version in model.get("modelVersions") or []:
                for f in version.get("files") or []:
                    if value in {h.upper() for h in (f.get("hashes") or {}).values()}:
                        return model, version
        return None

    def _search(self, query: dict[str, list[str]]) -> dict[str, Any]:
        text = (query.get("query") or [""])[0].lower()
        types = set(query.get("types") or [])
        bases = {b.lower() for b in query.get("baseModels") or []}
        limit = min(100, int((query.get("limit") or ["100"])[0] or 100))
        cursor = int((query.get("cursor") or ["0"])[0] or 0)
        nsfw = (query.get("nsfw") or ["false"])[0].lower() == "true"
        items = []
        for model in sorted(self._models.values(), key=lambda m: m["id"]):
            if types and model.get("type") not in types:
                continue
            if model.get("nsfw") and not nsfw:
                continue
            haystack = " ".join([model.get("name", ""), *model.get("tags", [])]).lower()
            if text and not all(term in haystack for term in text.split()):
                continue
            versions = model.get("modelVersions") or []
            if bases and not any((v.get("baseModel") or "").lower() in bases for v in versions):
                continue
            item = copy.deepcopy(model)
            for v in item.get("modelVersions") or []:  # list items: no removeEmpty, fewer keys
                v.setdefault("trainedWords", [])
                v.setdefault("images", [])
                for key in ("status", "createdAt", "covered"):
                    v.pop(key, None)
            items.append(item)
        page = items[cursor : cursor + limit]
        metadata: dict[str, Any] = {}
        if cursor + limit < len(items):
            metadata["nextCursor"] = str(cursor + limit)
            metadata["nextPage"] = f"{self.base_url}/api/v1/models?cursor={cursor + limit}&limit={limit}"
        return {"items": page, "metadata": metadata}

    def _sign(self, file_id: int) -> str:
        sig = secrets.token_hex(16)
        with self._lock:
            self._signatures[sig] = file_id
        return sig


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type, fake: FakeCivitai):
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real servers
    server: _Server
    server_name = "api"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeCivitai:
        return self.server.fake

    def _record(self) -> None:
        self.fake.requests.append(
            Recorded(self.server_name, self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        )

    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None,
              content_type: str | None = None) -> None:
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
            content_type = content_type or "application/json; charset=utf-8"
        elif isinstance(body, str):
            payload = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            payload = body or b""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _rule(self, route: str, key: int | None) -> bool:
        rule = self.fake._take_rule(route, key)
        if rule is None:
            return False
        body = rule.body if rule.body is not None else {"error": HTTPStatus(rule.status).phrase}
        self._send(rule.status, body, rule.headers)
        return True

    @property
    def browser(self) -> bool:
        return bool(_BROWSER.search(self.headers.get("User-Agent", "")))


class _ApiHandler(_Handler):
    server_name = "api"

    def do_HEAD(self) -> None:
        # HEAD on the download endpoint 401s even with a token on the real site.
        self._record()
        self._send(401, {"error": "Unauthorized"})

    def do_GET(self) -> None:
        self._record()
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        segs = [unquote(s) for s in parts.path.split("/") if s]
        fake = self.fake
        with fake._lock:
            match segs:
                case ["api", "v1", "models", mid]:
                    self._model(mid)
                case ["api", "v1", "models"]:
                    if not self._rule("search", None):
                        self._send(200, fake._search(query))
                case ["api", "v1", "model-versions", "by-hash", value]:
                    if self._rule("by-hash", None):
                        return
                    found = fake._by_hash(value)
                    if found is None:
                        self._send(404, {"error": "Model not found"})
                    else:
                        self._send(200, fake._version_response(*found))
                case ["api", "v1", "model-versions", vid]:
                    self._version(vid)
                case ["api", "download", "models", vid]:
                    self._download(vid, query)
                case ["login"]:
                    self._send(200, "<!DOCTYPE html><html><body>Log in to Civitai</body></html>",
                               content_type="text/html; charset=utf-8")
                case ["model-versions", vid]:
                    self._send(200, f"<!DOCTYPE html><html><body>Model version {vid}</body></html>",
                               content_type="text/html; charset=utf-8")
                case _:
                    self._send(404, {"error": "Not found"})

    def _int(self, text: str) -> int | None:
        return int(text) if text.isdigit() and 1 <= int(text) <= 2_147_483_647 else None

    def _model(self, raw: str) -> None:
        model_id = self._int(raw)
        if model_id is None:
            self._send(400, {"error": "Invalid id"})
        elif not self._rule("model", model_id):
            model = self.fake._models.get(model_id)
            if model is None:
                self._send(404, {"error": f"No model with id {model_id}"})
            else:
                self._send(200, model)

    def _version(self, raw: str) -> None:
        version_id = self._int(raw)
        if version_id is None:
            self._send(400, {"error": "Invalid id"})
            return
        if self._rule("version", version_id):
            return
        found = self.fake._find_version(version_id)
        if found is None:
            self._send(404, {"error": "Model not found"})
        else:
            self._send(200, self.fake._version_response(*found))

    def _download(self, raw: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        version_id = self._int(raw)
        if version_id is None:
            self._send(400, {"error": "Invalid id"})
            return
        if self._rule("download", version_id):
            return
        auth = self.headers.get("Authorization", "")
        presented = auth.split(" ", 1)[1] if " " in auth else (query.get("token") or [""])[0]
        browser = self.browser
        if fake.token is not None and presented != fake.token:
            if browser:
                self._send(307, b"", {"Location": f"/login?returnUrl=/model-versions/{version_id}&reason=download-auth"})
            else:
                self._send(401, {"error": "Unauthorized",
                                 "message": "The creator of this asset requires you to be logged in to download it"})
            return
        found = fake._find_version(version_id)
        if found is None:
            self._send(404, {"error": "File not found"} if not browser else "File not found")
            return
        model, version = found
        if model.get("mode") == "Archived":
            self._send(410, {"error": "Model archived, not available for download"})
            return
        if version_id in fake._early:
            if browser:
                self._send(307, b"", {"Location": f"/model-versions/{version_id}"})
            else:
                self._send(403, {"error": "Early Access", "deadline": fake._early[version_id],
                                 "message": "This asset is in Early Access. You can use Buzz access it now!"})
            return
        if version_id in fake._forbidden:
            self._send(403, {"error": "You do not have access to download this file"})
            return
        files = version.get("files") or []
        wanted = (query.get("fileId") or [None])[0]
        if wanted is not None:
            chosen = [f for f in files if str(f["id"]) == wanted]
        else:
            kind = (query.get("type") or [None])[0]
            fmt = (query.get("format") or [None])[0]
            chosen = [f for f in files if (kind is None or f.get("type") == kind)
                      and (fmt is None or (f.get("metadata") or {}).get("format") == fmt)]
            if kind is None and fmt is None:
                chosen = [f for f in files if f.get("primary")] or chosen
        if not chosen or chosen[0]["id"] not in fake._files:
            self._send(404, {"error": "File not found"})
            return
        file_id = chosen[0]["id"]
        stored = fake._files[file_id]
        sig = fake._sign(file_id)
        location = (f"{fake.storage_url}/model/{file_id}/{quote(stored.name, safe='')}?X-Amz-Expires=86400"
                    f"{_url_disposition(stored.disposition_name, stored.url_form)}&X-Amz-Signature={sig}")
        self._send(307, b"", {"Location": location, "Cache-Control": "no-store, max-age=0"})


def content_disposition(name: str, form: str = "rfc5987") -> str:
    """A Content-Disposition value. "rfc5987", as CivitAI's storage writes it: an ASCII `filename` and, for
    any other name, RFC 5987's `filename*` (HTTP headers are Latin-1, so `水彩风格.safetensors` cannot
    travel as-is); "rfc5987-only": `filename*` alone; "utf8": the name as it is in `filename`."""
    if form == "utf8":
        return f'attachment; filename="{name}"'
    extended = f"filename*=UTF-8''{quote(name, safe='')}"
    if form == "rfc5987-only":
        return f"attachment; {extended}"
    # Printable ASCII only: a control character or a quote would break the header.
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f'attachment; filename="{fallback}"; {extended}'


def _url_disposition(name: str, form: str | None) -> str:
    """The `&response-content-disposition=...` part of a signed storage URL ("" when left out)."""
    if form is None:
        return ""
    if form == "rfc5987-once":  # the value's own %-escapes are not encoded a second time
        return "&response-content-disposition=" + quote(content_disposition(name, "rfc5987-only"), safe="%")
    return "&response-content-disposition=" + quote(content_disposition(name, form), safe="")


class _StorageHandler(_Handler):
    server_name = "storage"

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._record()
        fake = self.fake
        if "Authorization" in self.headers:
            # R2 presigned URLs reject any Authorization header.
            self._send(400, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidRequest</Code>"
                            b"<Message>Missing x-amz-content-sha256</Message></Error>",
                       content_type="application/xml")
            return
        parts = urlsplit(self.path)
        segs = [s for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        sig = (query.get("X-Amz-Signature") or [""])[0]
        with fake._lock:
            file_id = fake._signatures.get(sig)
            if len(segs) < 2 or file_id is None or str(file_id) != segs[1]:
                self._send(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                           content_type="application/xml")
                return
            if self._rule("storage", file_id):
                return
            stored = fake._files[file_id]
            drop = fake._drops.get(file_id)
            cut_after = None
            if drop and drop[1] > 0:
                drop[1] -= 1
                cut_after = drop[0]
            stall = fake._stalls.get(file_id)
            stall_after = None
            if stall and stall[1] > 0:
                stall[1] -= 1
                stall_after = stall[0]
        if stored.html is not None:
            self._send(200, CLOUDFLARE_HTML, content_type=stored.html)
            return
        size = stored.size
        start, end = 0, size - 1
        status = 200
        header_range = self.headers.get("Range")
        if header_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", header_range.strip())
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size or start > end:
                    self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if stored.header_form == "utf8":
            # Raw UTF-8 bytes, as some servers send them (send_header would encode as Latin-1 and fail).
            line = f"Content-Disposition: {content_disposition(stored.disposition_name, 'utf8')}\r\n"
            self._headers_buffer.append(line.encode())
        elif stored.header_form is not None:
            self.send_header("Content-Disposition", content_disposition(stored.disposition_name, stored.header_form))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if cut_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        limit = cut_after if cut_after is not None else stall_after
        to_send = length if limit is None else max(0, min(length, limit))
        # Counted before sending, so a client that has read everything never sees a stale count;
        # corrected below if the send falls short.
        with fake._lock:
            fake._served[file_id] = fake._served.get(file_id, 0) + to_send
        sent = self._body(stored, start, to_send)
        if sent != to_send:
            with fake._lock:
                fake._served[file_id] -= to_send - sent
        if stall_after is not None and to_send < length:
            self._wait_for_hangup()
        elif cut_after is not None and to_send < length:
            with fake._lock:
                fake._signatures.pop(sig, None)  # a cut transfer's URL is expired: ask again
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True

    def _wait_for_hangup(self) -> None:
        """A stall: send nothing more until the client closes the connection (or the fake is closed)."""
        self.wfile.flush()
        while not self.fake._closed.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:  # end of stream (or a reset): the client has gone
                break
        self.close_connection = True

    def _body(self, stored: _File, start: int, count: int) -> int:
        """Send `count` bytes of the file from `start`; returns how many went out."""
        self.wfile.flush()
        flip = stored.size // 2 if stored.corrupt else -1
        sent = 0
        try:
            if isinstance(stored.content, bytes) or flip >= 0 or stored.rate:
                data = stored.content if isinstance(stored.content, bytes) else None
                with (open(stored.content, "rb") if data is None else _Null()) as f:
                    while sent < count:
                        n = min(_SEND_BLOCK if not stored.rate else 64 * 1024, count - sent)
                        if stored.rate:
                            time.sleep(n / stored.rate)
                        pos = start + sent
                        if data is not None:
                            block = bytearray(data[pos : pos + n])
                        else:
                            f.seek(pos)
                            block = bytearray(f.read(n))
                        if pos <= flip < pos + n:
                            block[flip - pos] ^= 0xFF
                        self.connection.sendall(block)
                        sent += n
                return sent
            with open(stored.content, "rb") as f:
                return self.connection.sendfile(f, start, count) or 0
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return sent  # the blocks sent before the client went away


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --------------------------------------------------------------------------- demo entry point


def _demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.fake_civitai", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--storage-port", type=int, default=0)
    parser.add_argument("--token", default=None, help="require this token for downloads")
    parser.add_argument("--dir", type=Path, default=None, help="where the fixture files are written")
    args = parser.parse_args(argv)
    owned = args.dir is None
    folder = Path(tempfile.mkdtemp(prefix="fake-civitai-")) if owned else args.dir
    folder.mkdir(parents=True, exist_ok=True)
    try:
        lora_path = write_safetensors(folder / "soft_watercolor_illu_v1.safetensors", "lora", 256 * 1024, seed=1)
        detail_path = write_safetensors(folder / "detail_tweaker_xl.safetensors", "lora", 128 * 1024, seed=2)
        ckpt_path = write_safetensors(folder / "dreamForgeXl_v20.safetensors", "checkpoint", 8 << 20, seed=3)
        fake = FakeCivitai(token=args.token, host=args.host, port=args.port, storage_port=args.storage_port)
        made = [
            fake.add_lora(name="Soft Watercolor Style [Illustrious]", path=lora_path,
                          trained_words=["wtrclr style", "watercolor"], filename=lora_path.name,
                          model_id=1234567, version_id=2345678),
            fake.add_lora(name="Detail Tweaker XL", path=detail_path, civitai_type="LoCon", trained_words=[],
                          base_model="SDXL 1.0", tags=("detail", "tool"), filename=detail_path.name,
                          description="<p>Use weight 0.5 to 1.5</p>"),
            fake.add_checkpoint(name="DreamForge XL", path=ckpt_path, filename=ckpt_path.name,
                                model_id=456789, version_id=1567890),
        ]
        print(f"fake CivitAI on {fake.base_url} (storage {fake.storage_url}); files in {folder}", flush=True)
        print(f"  export CIVITAI_BASE_URL={fake.base_url}", flush=True)
        for m in made:
            print(f"  {m.name}: model {m.model_id} version {m.version_id} file {m.file_id} -> {m.url}", flush=True)
        def stop(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)  # clean up the fixture files on SIGTERM too
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        fake.close()
    finally:
        if owned:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_demo())
