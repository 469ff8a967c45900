"""The fake's catalog: models, versions, files and preview images, and the JSON CivitAI answers with.

Shapes follow the real API: `/models` objects go through removeEmpty (empty arrays and nulls
dropped), `primary` is only on the primary file there but always a bool in `/model-versions`,
list items keep `trainedWords: []`, by-hash picks the oldest published version of a duplicate hash.
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.fake_civitai.images import StoredImage, blurhash_of, make_preview
from devtools.model_files import make_safetensors

SEND_BLOCK = 8 * 1024 * 1024
MAX_IDS = 100  # ids per GET /api/v1/models?ids= (the page limit)


@dataclass
class FakeModel:
    """What add_lora/add_checkpoint/add_version/register_hash added."""

    model_id: int
    version_id: int
    file_id: int
    sha256: str  # lowercase hex
    size: int
    name: str
    filename: str
    base_url: str
    json: dict[str, Any]
    image_urls: list[str] = field(default_factory=list)  # the version's previews, on the fake's host

    @property
    def url(self) -> str:
        """The model page URL with the version, as a user would paste it."""
        return f"https://civitai.com/models/{self.model_id}?modelVersionId={self.version_id}"


@dataclass
class StoredFile:
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


def file_hashes(sha: str, crc: int | None) -> dict[str, str]:
    """The `hashes` object; without the bytes (crc None) only what the SHA256 gives."""
    upper = sha.upper()
    if crc is None:
        return {"AutoV2": upper[:10], "SHA256": upper}
    return {
        "AutoV1": upper[:8],
        "AutoV2": upper[:10],
        "SHA256": upper,
        "CRC32": f"{crc:08X}",
        "BLAKE3": hashlib.blake2s(bytes.fromhex(sha)).hexdigest().upper(),
        "AutoV3": upper[-12:],
    }


def digest(content: bytes | Path) -> tuple[str, int, int]:
    """(sha256, crc32, size) of bytes or of a file, read in blocks."""
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest(), zlib.crc32(content), len(content)
    sha, crc, size = hashlib.sha256(), 0, 0
    with open(content, "rb") as f:
        while block := f.read(SEND_BLOCK):
            sha.update(block)
            crc = zlib.crc32(block, crc)
            size += len(block)
    return sha.hexdigest(), crc, size


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


# The model_files kind a new version of a CivitAI type is made of.
_KIND_OF_TYPE = {"Checkpoint": "checkpoint", "TextualInversion": "sdxl-embedding", "VAE": "vae", "Upscaler": "esrgan"}


def _default_filename(name: str, version_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() + f"_{version_name}.safetensors"


class Catalog:
    """The model store part of FakeCivitai (which supplies `base_url`)."""

    base_url: str

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._models: dict[int, dict[str, Any]] = {}
        self._files: dict[int, StoredFile] = {}
        self._images: dict[str, StoredImage] = {}  # url key (uuid) -> image
        self._ids = iter(range(100_001, 2_000_000_000, 7919))

    def _next_id(self) -> int:
        return next(self._ids)

    # ----------------------------------------------------------------- adding

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
                        self._files[f["id"]] = StoredFile(content, size, f.get("name") or f"file-{f['id']}")

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
        previews: Iterable[int] = (1,),
    ) -> FakeModel:
        """A LoRA (or LoCon/DoRA/any type via civitai_type) around `data` or the file at `path`."""
        if data is None and path is None:
            data = make_safetensors("lora", 4096, seed=len(self._models))
        return self._add(
            civitai_type, name=name, data=data, path=path, base_model=base_model, trained_words=trained_words,
            tags=tags, description=description, model_id=model_id, version_id=version_id,
            version_name=version_name, filename=filename, nsfw=nsfw, with_training_data=with_training_data,
            previews=previews,
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
        previews: Iterable[int] = (1,),
    ) -> FakeModel:
        """An SDXL checkpoint around `data` or the file at `path`."""
        if data is None and path is None:
            data = make_safetensors("checkpoint", 8192, seed=len(self._models))
        return self._add(
            "Checkpoint", name=name, data=data, path=path, base_model=base_model, trained_words=(), tags=tags,
            description=description, model_id=model_id, version_id=version_id, version_name=version_name,
            filename=filename, nsfw=nsfw, with_training_data=False, previews=previews,
        )

    def add_typed(
        self,
        civitai_type: str,
        *,
        name: str | None = None,
        data: bytes | None = None,
        path: str | Path | None = None,
        trained_words: Iterable[str] = (),
        base_model: str = "SDXL 1.0",
        tags: Iterable[str] = (),
        filename: str | None = None,
        model_id: int | None = None,
        version_id: int | None = None,
        previews: Iterable[int] = (1,),
    ) -> FakeModel:
        """A TextualInversion, VAE or Upscaler (or any other CivitAI type: Hypernetwork, Controlnet...).
        Without data or path: a tiny file of the type from devtools.model_files (an SDXL embedding, a
        diffusers VAE, an ESRGAN; other types a kohya LoRA's bytes)."""
        if data is None and path is None:
            data = make_safetensors(_KIND_OF_TYPE.get(civitai_type, "lora"), 4096, seed=len(self._models))
        return self._add(
            civitai_type, name=name or f"Fake {civitai_type}", data=data, path=path, base_model=base_model,
            trained_words=trained_words, tags=tags, description=None, model_id=model_id, version_id=version_id,
            version_name="v1.0", filename=filename, nsfw=False, with_training_data=False, previews=previews,
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
        previews: Iterable[int] = (1,),
    ) -> FakeModel:
        """A newer version of `model_id`: it becomes modelVersions[0]."""
        with self._lock:
            model = self._models[model_id]
            kind = _KIND_OF_TYPE.get(model["type"], "lora")
            if data is None and path is None:
                data = make_safetensors(kind, 4096, seed=self._next_id())
            content: bytes | Path = data if data is not None else Path(path)  # type: ignore[arg-type]
            sha, crc, size = digest(content)
            return self._new_version(model, content=content, sha=sha, crc=crc, size=size,
                                     version_name=version_name, trained_words=trained_words,
                                     filename=filename or _default_filename(model["name"], version_name),
                                     previews=previews)

    def register_hash(
        self,
        sha256: str,
        *,
        size: int = 4096,
        name: str | None = None,
        civitai_type: str = "LORA",
        base_model: str = "Illustrious",
        trained_words: Iterable[str] = (),
        tags: Iterable[str] = (),
        model_id: int | None = None,
        version_name: str = "v1.0",
        filename: str | None = None,
        published_at: str | None = None,
        nsfw: bool = False,
        previews: Iterable[int] = (1,),
    ) -> FakeModel:
        """Make the fake know a file by its SHA256 alone (no bytes: its download is 404 File not found).

        With `model_id` of a known model the file comes as that model's newest version, else as a new
        model. `published_at` (ISO) decides which of two versions sharing a hash by-hash answers.
        """
        sha = sha256.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(f"not a SHA256: {sha256!r}")
        with self._lock:
            if model_id is not None and model_id in self._models:
                model = self._models[model_id]
            else:
                label = name or f"Known {sha[:8]}"
                model = self._model_json(model_id or self._next_id(), label, civitai_type, tags, nsfw)
                self._models[model["id"]] = model
            return self._new_version(model, content=None, sha=sha, crc=None, size=size, version_name=version_name,
                                     trained_words=trained_words, base_model=base_model,
                                     filename=filename or f"{sha[:12]}.safetensors", published_at=published_at,
                                     previews=previews)

    # ----------------------------------------------------------------- JSON builders

    def _file_json(self, file_id: int, version_id: int, name: str, sha: str, crc: int | None,
                   size: int) -> dict[str, Any]:
        return {
            "id": file_id,
            "sizeKB": round(size / 1024, 2),  # rounded, as the real API does
            "name": name,
            "overrideName": None,
            "type": "Model",
            "pickleScanResult": "Success",
            "pickleScanMessage": "No Pickle imports",
            "virusScanResult": "Success",
            "virusScanMessage": None,
            "scannedAt": now_iso(),
            "hashes": file_hashes(sha, crc),
            "metadata": {"format": "PickleTensor" if name.lower().endswith((".pt", ".pth", ".ckpt", ".bin"))
                         else "SafeTensor", "size": "pruned", "fp": "fp16"},
            "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
            "primary": True,
        }

    def _previews(self, levels: Iterable[int]) -> list[dict[str, Any]]:
        """Preview images drawn now and served on the fake's host, as `images[]` of a version."""
        out = []
        for level in levels:
            image = make_preview(self._next_id(), int(level))
            self._images[image.key] = image
            out.append({
                "url": self.base_url + image.path(),
                "nsfwLevel": image.nsfw_level,
                "width": image.width,
                "height": image.height,
                "hash": blurhash_of(image.image_id),
                "type": "image",
                "minor": False,
                "poi": False,
                "hasMeta": True,
                "hasPositivePrompt": True,
                "onSite": False,
                "remixOfId": None,
            })
        return out

    def _version_json(
        self,
        *,
        version_id: int,
        name: str,
        base_model: str,
        trained_words: Iterable[str],
        description: str | None,
        files: list[dict[str, Any]],
        images: list[dict[str, Any]],
        index: int = 0,
        published_at: str | None = None,
    ) -> dict[str, Any]:
        level = 0
        for image in images:
            level |= image["nsfwLevel"]
        version: dict[str, Any] = {
            "id": version_id,
            "index": index,
            "name": name,
            "baseModel": base_model,
            "baseModelType": "Standard",
            "createdAt": published_at or now_iso(),
            "publishedAt": published_at or now_iso(),
            "status": "Published",
            "availability": "Public",
            "nsfwLevel": level or 1,
            "covered": False,
            "stats": {"downloadCount": 12, "thumbsUpCount": 3, "thumbsDownCount": 0},
            "files": files,
            "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
        }
        if images:  # removeEmpty(): empty arrays and nulls are dropped, not sent
            version["images"] = images
        words = list(trained_words)
        if words:
            version["trainedWords"] = words
        if description:
            version["description"] = description
        return version

    def _model_json(self, model_id: int, name: str, civitai_type: str, tags: Iterable[str],
                    nsfw: bool) -> dict[str, Any]:
        return {
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
            "modelVersions": [],
        }

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
        previews: Iterable[int],
    ) -> FakeModel:
        if (data is None) == (path is None):
            raise ValueError("give exactly one of data= or path=")
        content: bytes | Path = data if data is not None else Path(path)  # type: ignore[arg-type]
        sha, crc, size = digest(content)
        with self._lock:
            model = self._model_json(model_id or self._next_id(), name, civitai_type, tags, nsfw)
            self._models[model["id"]] = model
            return self._new_version(model, content=content, sha=sha, crc=crc, size=size, version_id=version_id,
                                     version_name=version_name, trained_words=trained_words, base_model=base_model,
                                     description=description, filename=filename or _default_filename(name, version_name),
                                     with_training_data=with_training_data, previews=previews)

    def _new_version(
        self,
        model: dict[str, Any],
        *,
        content: bytes | Path | None,
        sha: str,
        crc: int | None,
        size: int,
        version_name: str,
        trained_words: Iterable[str],
        filename: str,
        previews: Iterable[int],
        version_id: int | None = None,
        base_model: str | None = None,
        description: str | None = None,
        with_training_data: bool = False,
        published_at: str | None = None,
    ) -> FakeModel:
        """A version with one primary file, put first in the model's versions (the newest)."""
        version_id = version_id or self._next_id()
        file_id = self._next_id()
        files = [self._file_json(file_id, version_id, filename, sha, crc, size)]
        if with_training_data:
            training_id = self._next_id()
            training = b"PK\x05\x06" + b"\x00" * 18  # an empty zip
            t_sha, t_crc, t_size = digest(training)
            tj = self._file_json(training_id, version_id, f"{model['id']}_training_data.zip", t_sha, t_crc, t_size)
            tj.update(type="Training Data", metadata={"format": "Other"})
            tj.pop("primary")  # /models omits `primary` on non-primary files
            tj["downloadUrl"] = f"{self.base_url}/api/download/models/{version_id}?type=Training%20Data"
            files.append(tj)
            self._files[training_id] = StoredFile(training, t_size, tj["name"])
        previous = model.get("modelVersions") or []
        if base_model is None:
            base_model = previous[0].get("baseModel", "SDXL 1.0") if previous else "SDXL 1.0"
        images = self._previews(previews)
        version = self._version_json(version_id=version_id, name=version_name, base_model=base_model,
                                     trained_words=trained_words, description=description, files=files,
                                     images=images, published_at=published_at)
        for v in previous:
            v["index"] = v.get("index", 0) + 1
        model["modelVersions"] = [version, *previous]
        model["nsfwLevel"] = model.get("nsfwLevel", 1) | version["nsfwLevel"]
        if content is not None:  # a file known by hash only has nothing to download
            self._files[file_id] = StoredFile(content, size, filename)
        return FakeModel(model["id"], version_id, file_id, sha, size, model["name"], filename, self.base_url, model,
                         [image["url"] for image in images])

    # ----------------------------------------------------------------- lookups (under the lock)

    def _find_version(self, version_id: int) -> tuple[dict, dict] | None:
        for model in self._models.values():
            for version in model.get("modelVersions") or []:
                if version["id"] == version_id:
                    return model, version
        return None

    def _version_response(self, model: dict, version: dict) -> dict[str, Any]:
        """GET /api/v1/model-versions/{id}: the version plus `model`, `air`, primary always a bool."""
        eco = "sdxl"
        air_type = {"LORA": "lora", "LoCon": "lycoris", "DoRA": "dora", "Checkpoint": "checkpoint",
                    "TextualInversion": "embedding", "VAE": "vae", "Upscaler": "upscaler"}.get(
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
            "images": [self._image_detail(image) for image in version.get("images", [])],
        }
        if version.get("downloadUrl"):
            out["downloadUrl"] = version["downloadUrl"]
        if version.get("earlyAccessDeadline"):
            out["earlyAccessEndsAt"] = version["earlyAccessDeadline"]
        return out

    def _image_detail(self, image: dict[str, Any]) -> dict[str, Any]:
        """/model-versions images also carry `metadata` (blurhash, bytes, size), `meta` and `availability`."""
        stored = self._image_at(image.get("url", ""))
        size = len(stored.data) if stored is not None else 0
        detail = {**image, "metadata": {"hash": image.get("hash"), "size": size, "width": image.get("width"),
                                        "height": image.get("height")},
                  "meta": {"prompt": "a fake preview", "steps": 28, "sampler": "Euler a", "cfgScale": 5, "seed": 1},
                  "availability": "Public"}
        return detail

    def _image_at(self, url: str) -> StoredImage | None:
        segs = [s for s in url.split("/") if s]
        return self._images.get(segs[-3]) if len(segs) >= 3 else None

    def _versions_with_hash(self, value: str, *, sha256_only: bool = False) -> list[tuple[dict, dict]]:
        value = value.upper()
        found = []
        for model in self._models.values():
            for version in model.get("modelVersions") or []:
                for f in version.get("files") or []:
                    hashes = f.get("hashes") or {}
                    known = {hashes.get("SHA256", "").upper()} if sha256_only else {h.upper() for h in hashes.values()}
                    if value in known:
                        found.append((model, version))
                        break
        return found

    def _by_hash(self, value: str, *, sha256_only: bool = False) -> tuple[dict, dict] | None:
        """The version whose file has this hash; of duplicates, the first published (then lowest id)."""
        found = self._versions_with_hash(value, sha256_only=sha256_only)
        if not found:
            return None
        return min(found, key=lambda mv: (mv[1].get("publishedAt") or "", mv[1]["id"]))

    def _search(self, query: dict[str, list[str]], ids: set[int] | None = None) -> dict[str, Any]:
        text = (query.get("query") or [""])[0].lower()
        types = set(query.get("types") or [])
        bases = {b.lower() for b in query.get("baseModels") or []}
        limit = min(100, int((query.get("limit") or ["100"])[0] or 100))
        cursor = int((query.get("cursor") or ["0"])[0] or 0)
        nsfw = (query.get("nsfw") or ["false"])[0].lower() == "true"
        items = []
        for model in sorted(self._models.values(), key=lambda m: m["id"]):
            if ids is not None and model["id"] not in ids:
                continue
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
