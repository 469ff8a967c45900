"""Gateway test helpers: a real uvicorn server on port 0 in the test's event loop, SSE reading."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator

import httpx
import uvicorn

from gateway.app import create_app
from gateway.config import GatewaySettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_address() -> str:
    """An address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """Serve create_app(settings) over real HTTP on 127.0.0.1:<free port>; yield a client for it."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        await task


def settings_for(registry: str | None = None, civitai: str | None = None, inference: str | None = None,
                 **kw: object) -> GatewaySettings:
    return GatewaySettings(
        listen="127.0.0.1:0",
        registry=registry or dead_address(),
        civitai=civitai or dead_address(),
        inference=inference or dead_address(),
        ui=bool(kw.pop("ui", False)),
        **kw,  # type: ignore[arg-type]
    )


async def read_sse(response: httpx.Response, limit: int | None = None) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE response, up to `limit` events."""
    events: list[tuple[str, str]] = []
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                events.append((event, "\n".join(data)))
                if limit is not None and len(events) >= limit:
                    return events
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events


async def start_server(server_or_coro: object) -> object:
    """create_server() may return the server or a coroutine of it; start it on its port."""
    import inspect

    server = await server_or_coro if inspect.isawaitable(server_or_coro) else server_or_coro
    await server.start()  # type: ignore[attr-defined]
    return server


def stack_stop_problems(lines: list[str]) -> list[str]:
    """The problems `python -m devtools.stack` reported while stopping (lines starting 'stack: ')."""
    return [line for line in lines if line.startswith("stack: ")]


class CountingListener:
    """A TCP listener on 127.0.0.1 that records the first line of whatever connects (a fake proxy)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(4096).split(b"\r\n")[0].decode("latin-1"))
                except OSError:
                    self.seen.append("(connection)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def proxy_env(proxy: str) -> dict[str, str]:
    """Every proxy variable pointed at `proxy` (loopback excepted): what leaves the machine goes there."""
    env = {name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                                    "all_proxy")}
    return {**env, "NO_PROXY": "127.0.0.1,localhost,::1", "no_proxy": "127.0.0.1,localhost,::1"}
