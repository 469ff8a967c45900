"""ListModels: the stable order (type, display name, filename), its filters, and signed page tokens.

A page token is the last entry's sort key and the filters it was issued for,
signed with a key made at start: a client cannot forge a position, and a
token outlives neither a change of filters nor a restart.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable

from metadata_svc import limits
from metadata_svc.catalog import Catalog
from metadata_svc.errors import FieldTooLong, InvalidPageSize, InvalidPageToken
from metadata_svc.models import ModelEntry, Page

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# A ListModels page stops growing at this many encoded bytes, well under gRPC's usual 4 MiB
# message limit (the largest bounded entry is under 1 MiB; see limits.py).
PAGE_BYTE_BUDGET = 2 * 1024 * 1024
MAX_ROOT_ID_CHARS = 64
MAX_FOLDER_CHARS = 4096


# ListModelsRequest.root_id for the volume's own folders.
VOLUME_ROOT_ID = "volume"


def _place(entry: ModelEntry) -> tuple[str, str]:
    return entry.root_id, entry.folder


class ListOrder:
    """The entries in List's stable order, with parallel columns for fast filtering.

    Kept sorted by insertion (bisect) on every change instead of re-sorting
    10,000 entries after each write; filtering is list comprehensions over
    plain columns, several times faster than a Python predicate per entry.
    """

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        ordered = sorted(entries, key=ModelEntry.sort_key)
        self.entries = ordered
        self.keys = [e.sort_key() for e in ordered]
        self.types = [e.type for e in ordered]
        self.bases = [e.base_model.lower() for e in ordered]
        self.texts = [e.search_text() for e in ordered]
        self.places = [_place(e) for e in ordered]

    def insert(self, entry: ModelEntry) -> None:
        key = entry.sort_key()
        i = bisect.bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.entries.insert(i, entry)
        self.types.insert(i, entry.type)
        self.bases.insert(i, entry.base_model.lower())
        self.texts.insert(i, entry.search_text())
        self.places.insert(i, _place(entry))

    def remove(self, entry: ModelEntry) -> None:
        i = bisect.bisect_left(self.keys, entry.sort_key())
        if i < len(self.entries) and self.entries[i] is entry:
            for column in (self.keys, self.entries, self.types, self.bases, self.texts, self.places):
                del column[i]

    def matching(self, kind: str | None, base: str, terms: list[str], root_id: str = "",
                 folder: str = "") -> list[int]:
        """Positions (ascending) of the entries that pass every filter."""
        hits: list[int] | range = range(len(self.entries))
        if root_id or folder:
            places = self.places
            root = "" if root_id == VOLUME_ROOT_ID else root_id
            below = folder + "/"
            hits = [i for i in hits if (not root_id or places[i][0] == root)
                    and (not folder or places[i][1] == folder or places[i][1].startswith(below))]
        if kind:
            types = self.types
            hits = [i for i in hits if types[i] == kind]
        if base:
            bases = self.bases
            hits = [i for i in hits if bases[i] == base]
        texts = self.texts
        for term in terms:
            hits = [i for i in hits if term in texts[i]]
        return list(hits)


class Listing:
    """Pages of the catalog. `wire_size` is what an entry adds to a response, for the byte budget."""

    def __init__(self, catalog: Catalog, wire_size: Callable[[ModelEntry], int]) -> None:
        self._catalog = catalog
        self._wire_size = wire_size
        self._order: ListOrder | None = None  # built by the first List, then kept up to date
        self._token_key = secrets.token_bytes(32)
        catalog.listen(self._changed)

    def _changed(self, old: ModelEntry | None, new: ModelEntry | None) -> None:
        if self._order is None:
            return
        if old is not None:
            self._order.remove(old)
        if new is not None:
            self._order.insert(new)

    def page(self, *, page_size: int, page_token: str, kind: str | None, base_model: str, query: str,
             root_id: str = "", folder: str = "") -> Page:
        if page_size < 0:
            raise InvalidPageSize(f"page_size {page_size} is negative", metadata={"page_size": page_size})
        limits.check_query(query, base_model)
        if len(root_id) > MAX_ROOT_ID_CHARS or len(folder) > MAX_FOLDER_CHARS:
            field, limit = ("root_id", MAX_ROOT_ID_CHARS) if len(root_id) > MAX_ROOT_ID_CHARS else (
                "folder", MAX_FOLDER_CHARS)
            raise FieldTooLong(f"{field} is longer than {limit} characters", metadata={"field": field, "limit": limit})
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        base = base_model.strip().lower()
        terms = query.lower().split()
        folder = folder.strip().strip("/")
        fingerprint: list[object] = [kind or "", base, terms]
        if root_id or folder:  # tokens issued without these filters stay valid
            fingerprint += [root_id, folder]
        if self._order is None:
            self._order = ListOrder(self._catalog.entries())
        order = self._order
        start = 0
        if page_token:
            start = bisect.bisect_right(order.keys, self._decode_token(page_token, fingerprint))
        if not (kind or base or terms or root_id or folder):
            total = len(order.entries)
            page = order.entries[start:start + size]
            more = start + size < total
        else:
            hits = order.matching(kind, base, terms, root_id, folder)
            total = len(hits)
            first = bisect.bisect_left(hits, start)
            page = [order.entries[i] for i in hits[first:first + size]]
            more = first + size < total
        fitted = self._fit(page)
        more = more or len(fitted) < len(page)
        token = self._encode_token(fitted[-1].sort_key(), fingerprint) if more and fitted else ""
        return Page(fitted, token, total)

    def _fit(self, page: list[ModelEntry]) -> list[ModelEntry]:
        """The longest head of `page` within PAGE_BYTE_BUDGET (one entry at least, so paging moves on)."""
        used = 0
        for i, entry in enumerate(page):
            used += self._wire_size(entry)
            if used > PAGE_BYTE_BUDGET and i > 0:
                return page[:i]
        return page

    def _encode_token(self, key: tuple[int, str, str], fingerprint: list[object]) -> str:
        payload = json.dumps([list(key), fingerprint], separators=(",", ":")).encode()
        mac = hmac.new(self._token_key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def _decode_token(self, token: str, fingerprint: list[object]) -> tuple[int, str, str]:
        bad = InvalidPageToken("page_token is not one this server issued (or the registry restarted since)",
                               metadata={"page_token": token[:64]})
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise bad from None
        mac, payload = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, hmac.new(self._token_key, payload, hashlib.sha256).digest()[:16]):
            raise bad
        key, issued_for = json.loads(payload)
        if issued_for != fingerprint:
            raise InvalidPageToken("page_token was issued for a different filter (type, base_model or query)",
                                   metadata={"page_token": token[:64]})
        return (int(key[0]), str(key[1]), str(key[2]))
