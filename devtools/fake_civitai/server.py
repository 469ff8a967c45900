"""FakeCivitai: the catalog and the fault switches behind two real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import secrets
import threading
from collections import Counter

from devtools.fake_civitai.api_routes import ApiHandler
from devtools.fake_civitai.catalog import Catalog
from devtools.fake_civitai.faults import ROUTES, Faults
from devtools.fake_civitai.http_base import Recorded, Server
from devtools.fake_civitai.storage import StorageHandler


class FakeCivitai(Catalog, Faults):
    """The API server and the storage server; devtools/fake_civitai/README.md is the manual."""

    def __init__(self, *, token: str | None = None, host: str = "127.0.0.1", port: int = 0, storage_port: int = 0):
        Catalog.__init__(self)
        Faults.__init__(self, token)
        self._closed = threading.Event()
        self._signatures: dict[str, int] = {}  # valid storage signatures -> file id
        self._served: dict[int, int] = {}
        self._calls: Counter[str] = Counter()
        self.requests: list[Recorded] = []
        self._api = Server((host, port), ApiHandler, self)
        self._storage = Server((host, storage_port), StorageHandler, self)
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=f"fake-civitai-{n}")
            for n, s in (("api", self._api), ("storage", self._storage))
        ]
        for thread in self._threads:
            thread.start()

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:  # type: ignore[override]
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

    # ----------------------------------------------------------------- inspection

    def calls(self, route: str) -> int:
        """Requests that reached `route` (faulted and refused ones included) since the last reset_counters()."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r} (one of {', '.join(ROUTES)})")
        with self._lock:
            return self._calls[route]

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
            self._calls.clear()
            self.requests.clear()

    # ----------------------------------------------------------------- used by the handlers

    def _count(self, route: str) -> None:
        with self._lock:
            self._calls[route] += 1

    def _sign(self, file_id: int) -> str:
        sig = secrets.token_hex(16)
        with self._lock:
            self._signatures[sig] = file_id
        return sig
