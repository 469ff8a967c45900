"""`python -m gateway --listen 127.0.0.1:8000 --registry ... --civitai ... --inference ...`"""

from __future__ import annotations

import signal
import sys

import uvicorn

from gateway.app import create_app
from gateway.config import GatewaySettings
from service_kit import configure_logging


def main(argv: list[str] | None = None) -> int:
    settings = GatewaySettings.from_args(argv)
    configure_logging("gateway", level=settings.log_level, json=settings.log_format == "json",
                      secrets=[settings.api_key])
    app = create_app(settings)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again under the handlers it
    # found. With these no-ops, a stop that was asked for ends with status 0 (not -15, nor a
    # KeyboardInterrupt traceback), like the gRPC services.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    print(f"gateway listening on http://{settings.listen} (API docs: http://{settings.listen}/docs)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
