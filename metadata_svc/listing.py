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
import itertools
import json
import operator
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from metadata_svc import limits
from metadata_svc.catalog import Catalog
from metadata_svc.errors import FieldTooLong, InvalidPageSize, InvalidPageToken
from metadata_svc.models import TYPES, ModelEntry, Page

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# A ListModels page stops growing at this many encoded bytes, well under gRPC's usual 4 MiB
# message limit (the largest bounded entry is under 1 MiB; see limits.py).
PAGE_BYTE_BUDGET = 2 * 1024 * 1024
MAX_ROOT_ID_CHARS = 64
MATCHES_KEPT = 8  # filters whose matches are kept until the next change (at most ~800 KB each)
MAX_FOLDER_CHARS = 4096


# ListModelsRequest.root_id for the volume's own folders.
VOLUME_ROOT_ID = "volume"


class ListOrder:
    """The entries in List's stable order, with parallel columns for fast filtering.

    Kept sorted by insertion (bisect) on every change instead of re-sorting
    100,000 entries per query. The order starts with the type, so a type is one
    slice (two bisects); the other filters run over plain columns in C
    (compress/map), about ten times faster than a Python test per entry.
    """

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        unordered = list(entries)
        keys = [e.sort_key() for e in unordered]
        order = sorted(range(len(unordered)), key=keys.__getitem__)
        self.entries = [unordered[i] for i in order]
        self.keys = [keys[i] for i in order]
        self.texts = [e.search_text() for e in self.entries]  # the query, the filter most Lists use
        # The rarer filters' columns are made by the first List that needs one (start-up need not).
        self._lazy: dict[str, list[str]] = {}

    @property
    def types(self) -> list[str]:
        """Each entry's type, in order (no column: a type is one slice of the order)."""
        return [e.type for e in self.entries]

    def _column(self, name: str) -> list[str]:
        column = self._lazy.get(name)
        if column is None:
            column = self._lazy[name] = list(map(_LAZY_COLUMNS[name], self.entries))
        return column

    def insert(self, entry: ModelEntry) -> None:
        key = entry.sort_key()
        i = bisect.bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.entries.insert(i, entry)
        self.texts.insert(i, entry.search_text())
        for name, column in self._lazy.items():
            column.insert(i, _LAZY_COLUMNS[name](entry))

    def remove(self, entry: ModelEntry) -> None:
        i = bisect.bisect_left(self.keys, entry.sort_key())
        if i < len(self.entries) and self.entries[i] is entry:
            del self.keys[i], self.entries[i], self.texts[i]
            for column in self._lazy.values():
                del column[i]

    def matching(self, kind: str | None, base: str, terms: list[str], root_id: str = "",
                 folder: str = "") -> Sequence[int]:
        """Positions (ascending) of the entries that pass every filter."""
        hits: Sequence[int] = range(len(self.entries))
        if kind:
            # The order's first part is the type: its entries are the slice between (type,) and (type + 1,).
            rank = TYPES.index(kind) if kind in TYPES else len(TYPES)
            hits = range(bisect.bisect_left(self.keys, (rank,)), bisect.bisect_left(self.keys, (rank + 1,)))
        if root_id:
            hits = _keep(hits, self._column("roots"), operator.eq, "" if root_id == VOLUME_ROOT_ID else root_id)
        if folder:
            # The folder itself or one below it: "<folder>/" starts "<entry's folder>/".
            hits = _keep(hits, self._column("folders"), str.startswith, _below(folder))
        if base:
            hits = _keep(hits, self._column("bases"), operator.eq, base)
        for term in terms:
            hits = _keep(hits, self.texts, operator.contains, term)
        return hits


def _below(folder: str) -> str:
    return folder + "/"


_LAZY_COLUMNS: dict[str, Callable[[ModelEntry], str]] = {
    "bases": lambda e: e.base_model.lower(),
    "roots": lambda e: e.root_id,
    "folders": lambda e: _below(e.folder),
}


def _keep(hits: Sequence[int], column: list[Any], test: Callable[[Any, Any], bool], value: object) -> list[int]:
    """The positions in `hits` whose `column` value passes `test(value_in_column, value)`, in C."""
    values: Iterable[Any] = (column[hits.start:hits.stop] if isinstance(hits, range)
                             else map(column.__getitem__, hits))
    return list(itertools.compress(hits, map(test, values, itertools.repeat(value))))


class Listing:
    """Pages of the catalog. `wire_size` is what an entry adds to a response, for the byte budget."""

    def __init__(self, catalog: Catalog, wire_size: Callable[[ModelEntry], int]) -> None:
        self._catalog = catalog
        self._wire_size = wire_size
        # Built at start (off the event loop: the registry is made in a thread), then kept up to date.
        self._order = ListOrder(catalog.entries())
        self._token_key = secrets.token_bytes(32)
        # The positions the last few filters matched, while nothing changed: paging through a query, or
        # coming back to one, costs the page alone instead of a pass over every entry.
        self._matched: OrderedDict[tuple[object, ...], Sequence[int]] = OrderedDict()
        catalog.listen(self._changed)

    def _changed(self, old: ModelEntry | None, new: ModelEntry | None) -> None:
        self._matched.clear()
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
        order = self._order
        start = 0
        if page_token:
            start = bisect.bisect_right(order.keys, self._decode_token(page_token, fingerprint))
        hits = self._matching(kind, base, terms, root_id, folder)
        total = len(hits)
        first = bisect.bisect_left(hits, start)
        page = [order.entries[i] for i in hits[first:first + size]]
        more = first + size < total
        fitted = self._fit(page)
        more = more or len(fitted) < len(page)
        token = self._encode_token(fitted[-1].sort_key(), fingerprint) if more and fitted else ""
        return Page(fitted, token, total)

    def _matching(self, kind: str | None, base: str, terms: list[str], root_id: str, folder: str) -> Sequence[int]:
        key = (kind, base, tuple(terms), root_id, folder)
        hits = self._matched.get(key)
        if hits is None:
            hits = self._order.matching(kind, base, terms, root_id, folder)
            self._matched[key] = hits
            if len(self._matched) > MATCHES_KEPT:
                self._matched.popitem(last=False)
        else:
            self._matched.move_to_end(key)
        return hits

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
