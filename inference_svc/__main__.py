"""`python -m inference_svc --listen 127.0.0.1:50053 --registry 127.0.0.1:50051`."""

from __future__ import annotations

import sys

from inference_svc.app import create_server
from inference_svc.config import from_args
from service_kit import configure_logging, serve


def main(argv: list[str] | None = None) -> int:
    settings = from_args(argv)
    configure_logging("inference", level=settings.log_level, json=settings.log_format == "json")
    serve(lambda: create_server(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
