"""`python -m metadata_svc --listen 127.0.0.1:50051 --user-models-dir DIR --models-dir DIR`."""

from __future__ import annotations

import sys

from metadata_svc.app import create_server
from metadata_svc.config import RegistrySettings
from metadata_svc.errors import CorruptIndexError
from service_kit import configure_logging, get_logger, serve
from service_kit.files import LockHeld


def main(argv: list[str] | None = None) -> int:
    settings = RegistrySettings.from_args(argv)
    configure_logging("registry", level=settings.log_level, json=settings.log_format == "json")
    try:
        serve(lambda: create_server(settings))
    except CorruptIndexError as exc:
        get_logger("metadata_svc").error("registry.corrupt_index", path=str(exc.path), detail=exc.detail)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
