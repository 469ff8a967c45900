"""HTTP access to CivitAI: one httpx client, an honest User-Agent, retries, a metadata cache.

Why each piece:
- CivitAI's WAF blocks Python's default UA and its download endpoint answers
  browsers with HTML, so we send a descriptive non-browser User-Agent.
- 429, 5xx and connection errors are retried with exponential backoff
  (base, 2*base, 4*base...), honouring Retry-After (seconds or HTTP-date).
- The token goes in `Authorization: Bearer` to the configured CivitAI origin
  only. Redirects are never followed by httpx: the 307 target is a signed
  storage URL that rejects any Authorization header (R2 answers 400), so the
  caller opens it itself, without the header.
- Metadata answers are cached in memory for a time limit; the key includes a
  fingerprint of the token, because a token can see models the anonymous
  caller cannot.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

from civitai_svc import errors as E
from service_kit.logs import get_logger, redact_text

log = get_logger("civitai_svc.api")

# httpcore reads at most 64 KiB per socket read; model files are gigabytes, and each read costs a
# trip through h11, anyio and the event loop. 1 MiB reads cut the per-GiB CPU of a download by a
# third (bench/bench_download.py). A class-level tunable of httpcore; it only raises the read size.
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = max(httpcore.AsyncHTTP11Connection.READ_NUM_BYTES, 1024 * 1024)

USER_AGENT = "modelmanager-civitai-fetcher/0.1 (self-hosted SDXL model manager; httpx)"
RETRYABLE = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
BY_HASH_BATCH = 100  # POST /api/v1/model-versions/by-hash takes at most this many hashes
MODELS_BATCH = 100  # GET /api/v1/models?ids= takes at most this many ids (its page limit)


class TooLarge(Exception):
    """A bounded fetch passed its byte bound; the rest was not read."""


class Disallowed(Exception):
    """A bounded fetch was asked for (or redirected to) a URL its caller does not allow."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # retries after the first try
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 120.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt` (0-based)."""
        backoff = min(self.backoff_base * (2**attempt), self.backoff_max)
        if retry_after is not None:
            return max(backoff, min(retry_after, self.retry_after_max))
        return backoff


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _body_of(response: httpx.Response) -> tuple[dict[str, Any], str]:
    """(JSON object or {}, message) of an error answer; the message is CivitAI's own words."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict | list):  # list endpoints send a serialized Zod error object
            err = json.dumps(err)[:300]
        parts = [str(p) for p in (err, data.get("message")) if p]
        return data, redact_text("; ".join(parts))[:500]
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        text = ""
    return {}, redact_text(text.strip().splitlines()[0] if text.strip() else "")[:300]


def error_for(response: httpx.Response, what: str, *, token_sent: bool) -> E.errors.ServiceError:
    """Map a CivitAI error answer to this service's error: one class per case a client handles differently
    (log in, wait out early access, give up, retry later)."""
    status = response.status_code
    data, message = _body_of(response)
    said = f" (CivitAI: {message})" if message else ""
    meta: dict[str, object] = {"http_status": status, "what": what}
    if status == 401:
        # Name the setting to fix either way (which one was sent is not ours to say; never the token itself).
        hint = "the token sent was not accepted; check CIVITAI_TOKEN or the per-request token" if token_sent else E.TOKEN_HINT
        return E.CivitaiUnauthenticated(f"CivitAI requires a login for {what}{said}; {hint}", metadata=meta)
    if status == 403:
        if str(data.get("error", "")).lower() == "early access":
            deadline = str(data.get("deadline") or "")
            return E.EarlyAccess(
                f"{what} is in early access until {deadline or 'an unknown date'}{said}",
                metadata={**meta, "deadline": deadline},
            )
        return E.CivitaiForbidden(f"CivitAI denies access to {what}{said}", metadata=meta)
    if status == 404:
        return E.CivitaiNotFound(f"CivitAI has no {what}{said}", metadata=meta)
    if status == 410:
        return E.ModelArchived(f"{what} is archived on CivitAI and cannot be downloaded{said}", metadata=meta)
    if status == 400:
        return E.CivitaiBadRequest(f"CivitAI rejected the request for {what}{said}", metadata=meta)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if retry_after is not None:
        meta["retry_after_seconds"] = round(retry_after, 1)
    return E.CivitaiUnavailable(f"CivitAI is unavailable for {what}: HTTP {status}{said}; try again later", metadata=meta)


class _TtlCache:
    def __init__(self, ttl: float, max_entries: int) -> None:
        self._ttl, self._max = ttl, max_entries
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        if self._ttl <= 0:
            return
        self._data[key] = (time.monotonic() + self._ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


@dataclass(frozen=True)
class Redirect:
    """Where the download endpoint sent us; `same_origin` says whether the token may follow."""

    url: str
    same_origin: bool


class CivitaiApi:
    """The CivitAI REST API and download endpoint; `aclose()` when done."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        cache_ttl: float = 300.0,
        cache_max_entries: int = 512,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
        user_agent: str = "",
        max_connections: int = 32,
    ) -> None:
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self.token = token or None
        self.retry = retry or RetryPolicy()
        self._cache = _TtlCache(cache_ttl, cache_max_entries)
        self.requests_sent = 0  # for tests of the cache
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=False,
            headers={"User-Agent": user_agent or USER_AGENT},
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=8),
            trust_env=False,  # a netrc entry must not add BasicAuth next to our Bearer token
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ plumbing

    def same_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == (self.base_url.scheme, self.base_url.host, self.base_url.port)

    def _headers(self, url: httpx.URL, token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        token = token or self.token
        if token and self.same_origin(url):
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def url(self, path: str) -> httpx.URL:
        return self.base_url.join(path.lstrip("/"))

    async def _send(
        self,
        url: httpx.URL,
        *,
        what: str,
        token: str | None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        method: str = "GET",
        json_body: Any = None,
        auth: bool = True,
    ) -> httpx.Response:
        """A request with retries on 429/5xx/connection errors (GET, or an idempotent POST such as the bulk
        by-hash lookup); returns the last answer (any status). `auth=False` never sends the token."""
        attempt = 0
        while True:
            sent = self._headers(url, token, headers) if auth else dict(headers or {})
            request = self._client.build_request(method, url, params=params, json=json_body, headers=sent)
            retry_after: float | None = None
            try:
                self.requests_sent += 1
                response = await self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt >= self.retry.attempts:
                    raise E.CivitaiUnavailable(
                        f"cannot reach CivitAI for {what}: {type(exc).__name__}; try again later",
                        metadata={"what": what, "error": type(exc).__name__},
                    ) from None
                log.warning("civitai.retry", what=what, attempt=attempt + 1, error=type(exc).__name__)
            else:
                if response.status_code not in RETRYABLE or attempt >= self.retry.attempts:
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                log.warning("civitai.retry", what=what, attempt=attempt + 1, status=response.status_code,
                            retry_after=retry_after)
                await response.aclose()
            await asyncio.sleep(self.retry.delay(attempt, retry_after))
            attempt += 1

    async def get_json(
        self, path: str, *, what: str, token: str | None = None, params: Any = None, fresh: bool = False
    ) -> Any:
        """A metadata GET, cached (`fresh` skips the cached answer and refreshes it); errors mapped."""
        url = self.url(path)
        token = token or self.token
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:16] if token else "-"
        key = f"{url}?{httpx.QueryParams(params or {})}#{fingerprint}"
        cached = None if fresh else self._cache.get(key)
        if cached is not None:
            return cached
        response = await self._send(url, what=what, token=token, params=params)
        data = _json_of(response, what, token_sent=bool(token))
        self._cache.put(key, data)
        return data

    async def post_json(self, path: str, body: Any, *, what: str, token: str | None = None) -> Any:
        """A metadata POST (a lookup, so retried like a GET; never cached); errors mapped."""
        token = token or self.token
        response = await self._send(self.url(path), what=what, token=token, method="POST", json_body=body)
        return _json_of(response, what, token_sent=bool(token))

    def clear_cache(self) -> None:
        self._cache.clear()

    # ------------------------------------------------------------------ metadata endpoints

    async def get_model(self, model_id: int, token: str | None = None, *, fresh: bool = False) -> dict[str, Any]:
        return await self.get_json(f"api/v1/models/{model_id}", what=f"model {model_id}", token=token, fresh=fresh)

    async def get_version(self, version_id: int, token: str | None = None) -> dict[str, Any]:
        return await self.get_json(f"api/v1/model-versions/{version_id}", what=f"model version {version_id}", token=token)

    async def get_version_by_hash(self, value: str, token: str | None = None) -> dict[str, Any]:
        value = value.upper()
        return await self.get_json(f"api/v1/model-versions/by-hash/{value}", what=f"file with hash {value}", token=token)

    async def versions_by_hashes(self, sha256s: list[str], token: str | None = None) -> list[Any]:
        """CivitAI's bulk by-hash lookup (at most BY_HASH_BATCH SHA256s): the versions it knows, misses dropped."""
        if len(sha256s) > BY_HASH_BATCH:
            raise ValueError(f"at most {BY_HASH_BATCH} hashes a call")
        data = await self.post_json("api/v1/model-versions/by-hash", [h.upper() for h in sha256s],
                                    what=f"a lookup of {len(sha256s)} file hashes", token=token)
        if not isinstance(data, list):
            raise E.CivitaiUnavailable("CivitAI answered the bulk hash lookup with something other than a list",
                                       metadata={"what": "by-hash"})
        return data

    async def models_by_ids(self, model_ids: list[int], token: str | None = None, *, fresh: bool = False) -> list[Any]:
        """`/models?ids=` (at most MODELS_BATCH): the models with their versions, tags, creator and description,
        every NSFW level. `fresh` skips the cache (an update check wants news)."""
        if len(model_ids) > MODELS_BATCH:
            raise ValueError(f"at most {MODELS_BATCH} model ids a call")
        params = [("ids", ",".join(str(i) for i in model_ids)), ("limit", str(MODELS_BATCH)), ("nsfw", "true")]
        data = await self.get_json("api/v1/models", what=f"{len(model_ids)} models", token=token, params=params,
                                   fresh=fresh)
        items = data.get("items") if isinstance(data, dict) else None
        return items if isinstance(items, list) else []

    async def search(self, params: list[tuple[str, str]], token: str | None = None) -> dict[str, Any]:
        return await self.get_json("api/v1/models", what="the model search", token=token, params=params)

    # ------------------------------------------------------------------ images

    async def fetch_bounded(
        self, url: str, *, max_bytes: int, allowed: Callable[[httpx.URL], bool], what: str, max_redirects: int = 3
    ) -> bytes:
        """A small body (a preview image), streamed and dropped as soon as it passes `max_bytes`
        (TooLarge). Never with the token. Only URLs `allowed` says yes to are fetched, redirect
        targets included (Disallowed). Retries as any request; errors mapped (error_for)."""
        target = httpx.URL(url)
        for _ in range(max_redirects + 1):
            if not allowed(target):
                raise Disallowed(f"{what}: host {target.host!r} is not an allowed image host")
            response = await self._send(target, what=what, token=None, stream=True, auth=False,
                                        headers={"Accept": "image/webp,image/png,image/jpeg,image/*;q=0.8"})
            try:
                if response.status_code in REDIRECTS and response.headers.get("Location"):
                    target = response.url.join(response.headers["Location"])
                    continue
                if response.status_code != 200:
                    await response.aread()
                    raise error_for(response, what, token_sent=False)
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise TooLarge(f"{what}: {declared} bytes announced, over the {max_bytes}-byte limit")
                body = bytearray()
                async for chunk in response.aiter_bytes():  # decoded: a gzip bomb counts as what it inflates to
                    body += chunk
                    if len(body) > max_bytes:
                        raise TooLarge(f"{what}: over the {max_bytes}-byte limit")
                return bytes(body)
            finally:
                await response.aclose()
        raise Disallowed(f"{what}: more than {max_redirects} redirects")

    # ------------------------------------------------------------------ downloads

    async def resolve_download(self, version_id: int, file_id: int, token: str | None = None) -> Redirect:
        """Ask the download endpoint where the file is (a fresh signed URL each time)."""
        what = f"the download of version {version_id}"
        url = self.url(f"api/download/models/{version_id}")
        params = {"fileId": str(file_id)} if file_id else None
        response = await self._send(url, what=what, token=token, params=params, stream=True)
        try:
            status = response.status_code
            if status in REDIRECTS:
                location = response.headers.get("Location", "")
                if not location:
                    raise E.CivitaiUnavailable(f"CivitAI sent a redirect without a target for {what}")
                target = response.url.join(location)
                if self.same_origin(target):
                    # The browser flows: a login page or the model page means no access.
                    path = target.path.lower()
                    if path.startswith("/login") or "reason=download-auth" in str(target.query):
                        raise E.CivitaiUnauthenticated(
                            f"CivitAI requires a login for {what}; {E.TOKEN_HINT}", metadata={"what": what}
                        )
                    if path.startswith(("/model-versions/", "/models/")):
                        raise E.EarlyAccess(
                            f"{what} is not downloadable (early access?); CivitAI sent its model page",
                            metadata={"what": what, "deadline": ""},
                        )
                return Redirect(str(target), self.same_origin(target))
            if status == 200:
                # A mirror may serve the file itself; the caller GETs it again (same origin, token allowed).
                return Redirect(str(response.url), True)
            await response.aread()
            raise error_for(response, what, token_sent=bool(token or self.token))
        finally:
            await response.aclose()

    async def open_file(self, redirect: Redirect, offset: int, token: str | None = None) -> httpx.Response:
        """A streaming GET of the file from `offset` (no retries: the downloader resumes instead)."""
        url = httpx.URL(redirect.url)
        # The body is saved as it comes (aiter_raw): ask for it uncompressed.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        # The token never goes to the storage host, whatever `token` says.
        request = self._client.build_request(
            "GET", url, headers=self._headers(url, token, headers) if redirect.same_origin else headers
        )
        self.requests_sent += 1
        return await self._client.send(request, stream=True)


def _json_of(response: httpx.Response, what: str, *, token_sent: bool) -> Any:
    if response.status_code != 200:
        raise error_for(response, what, token_sent=token_sent)
    try:
        return response.json()
    except ValueError:
        # Cloudflare challenge pages come back as HTML with status 200/403.
        raise E.CivitaiUnavailable(
            f"CivitAI answered {what} with something other than JSON (a challenge page?); try again later",
            metadata={"what": what, "content_type": response.headers.get("content-type", "")},
        ) from None


def parse_time(value: object) -> datetime | None:
    """An ISO timestamp from CivitAI ('2025-09-14T10:02:33.118Z'), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
