"""`python -m civitai_svc --listen 127.0.0.1:50052 --registry 127.0.0.1:50051 --user-models-dir DIR`."""

from __future__ import annotations

import sys

from civitai_svc.app import create_server
from civitai_svc.config import CivitaiSettings
from service_kit import configure_logging, serve
from service_kit.files import LockHeld


def main(argv: list[str] | None = None) -> int:
    settings = CivitaiSettings.from_args(argv)
    configure_logging("civitai", level=settings.log_level, json=settings.log_format == "json",
                      secrets=[settings.token])
    try:
        serve(lambda: create_server(settings))
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
