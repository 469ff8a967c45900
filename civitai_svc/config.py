"""Settings of the CivitAI service: flags whose defaults come from MODELMGR_* / CIVITAI_* variables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service_kit import config

DEFAULT_BASE_URL = "https://civitai.com"


@dataclass
class CivitaiSettings:
    listen: str = config.DEFAULT_CIVITAI
    registry: str = config.DEFAULT_REGISTRY
    # The registry's user-models volume: finished files go to loras/ or checkpoints/ here (via .part + rename).
    user_models_dir: Path = Path("data/user-models")
    # Mirrors and tests point this elsewhere; the token is sent to this origin only.
    base_url: str = DEFAULT_BASE_URL
    token: str | None = None
    max_concurrent_downloads: int = 2
    # Metadata responses are cached this long (CivitAI itself caches public answers 5 minutes).
    cache_ttl_seconds: float = 300.0
    cache_max_entries: int = 512
    # Tries after the first one, on 429/5xx/connection errors: delays base, 2*base, 4*base...
    retry_attempts: int = 3
    retry_backoff_base: float = 1.0
    retry_backoff_max: float = 30.0
    # Retry-After is honoured up to this many seconds (a day-long Retry-After must not pin a job).
    retry_after_max: float = 120.0
    # Consecutive resumes without progress before a download fails.
    max_resumes: int = 8
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    # Free space kept on the volume beyond the file itself.
    disk_reserve_bytes: int = 256 * 1024 * 1024
    # Finished jobs kept for List/Get.
    max_finished_jobs: int = 200
    user_agent: str = ""
    log_level: str = "INFO"
    log_format: str = "json"

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> CivitaiSettings:
        parser = argparse.ArgumentParser(prog="python -m civitai_svc", description="CivitAI fetcher and downloader")
        config.add_common_settings(parser, listen_env="MODELMGR_CIVITAI_LISTEN", default_listen=config.DEFAULT_CIVITAI)
        add = config.add_setting
        add(parser, "--registry", "REGISTRY_ADDR", config.DEFAULT_REGISTRY, "model registry address, HOST:PORT")
        add(parser, "--user-models-dir", "USER_MODELS_DIR", Path("data/user-models"), "user-models volume", type=Path)
        add(parser, "--base-url", "CIVITAI_BASE_URL", DEFAULT_BASE_URL, "CivitAI base URL")
        # The token has no flag on purpose: a flag shows up in `ps`. Environment only.
        add(parser, "--max-concurrent-downloads", "MODELMGR_CIVITAI_MAX_CONCURRENT_DOWNLOADS", 2, "downloads at once", type=int)
        add(parser, "--cache-ttl", "MODELMGR_CIVITAI_CACHE_TTL", 300.0, "metadata cache time limit, seconds", type=float)
        add(parser, "--retry-attempts", "MODELMGR_CIVITAI_RETRY_ATTEMPTS", 3, "retries on 429/5xx/connection errors", type=int)
        add(parser, "--retry-backoff", "MODELMGR_CIVITAI_RETRY_BACKOFF", 1.0, "first retry delay, seconds (doubles)", type=float)
        add(parser, "--retry-after-max", "MODELMGR_CIVITAI_RETRY_AFTER_MAX", 120.0, "longest Retry-After honoured, s", type=float)
        add(parser, "--user-agent", "MODELMGR_CIVITAI_USER_AGENT", "", "User-Agent sent to CivitAI (a non-browser one)")
        args = parser.parse_args(argv)
        return cls(
            listen=args.listen,
            registry=args.registry,
            user_models_dir=args.user_models_dir,
            base_url=args.base_url.rstrip("/"),
            token=config.env("CIVITAI_TOKEN"),
            max_concurrent_downloads=max(1, args.max_concurrent_downloads),
            cache_ttl_seconds=args.cache_ttl,
            retry_attempts=max(0, args.retry_attempts),
            retry_backoff_base=args.retry_backoff,
            retry_after_max=args.retry_after_max,
            user_agent=args.user_agent,
            log_level=args.log_level,
            log_format=args.log_format,
        )
