"""Settings of the CivitAI service, each declared once: default, flag, MODELMGR_* variable, help."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from service_kit import config
from service_kit.config import CliSettings, setting

DEFAULT_BASE_URL = "https://civitai.com"


@dataclass
class CivitaiSettings(CliSettings):
    CLI_PROG: ClassVar[str] = "python -m civitai_svc"
    CLI_DESCRIPTION: ClassVar[str] = "CivitAI fetcher and downloader"

    listen: str = config.listen_setting("MODELMGR_CIVITAI_LISTEN", config.DEFAULT_CIVITAI)
    registry: str = config.registry_addr_setting()
    # The registry's user-models volume: finished files go to loras/ or checkpoints/ here (via .part + rename).
    user_models_dir: Path = config.user_models_dir_setting()
    # Mirrors and tests point this elsewhere; the token is sent to this origin only.
    base_url: str = setting(DEFAULT_BASE_URL, help="CivitAI base URL",
                            env="MODELMGR_CIVITAI_BASE_URL", aliases=("CIVITAI_BASE_URL",))
    # No flag on purpose: a flag shows up in `ps`. Environment only.
    token: str | None = setting(None, help="CivitAI API token", env="CIVITAI_TOKEN", env_only=True)
    max_concurrent_downloads: int = setting(2, help="downloads at once",
                                            env="MODELMGR_CIVITAI_MAX_CONCURRENT_DOWNLOADS")
    # Metadata responses are cached this long (CivitAI itself caches public answers 5 minutes).
    cache_ttl_seconds: float = setting(300.0, help="metadata cache time limit, seconds",
                                       flag="--cache-ttl", env="MODELMGR_CIVITAI_CACHE_TTL")
    cache_max_entries: int = setting(512, help="metadata responses kept in the cache",
                                     env="MODELMGR_CIVITAI_CACHE_MAX_ENTRIES", minimum=0)
    # Tries after the first one, on 429/5xx/connection errors: delays base, 2*base, 4*base...
    retry_attempts: int = setting(3, help="retries on 429/5xx/connection errors",
                                  env="MODELMGR_CIVITAI_RETRY_ATTEMPTS")
    retry_backoff_base: float = setting(1.0, help="first retry delay, seconds (doubles)",
                                        flag="--retry-backoff", env="MODELMGR_CIVITAI_RETRY_BACKOFF")
    retry_backoff_max: float = setting(30.0, help="longest retry delay, seconds",
                                       env="MODELMGR_CIVITAI_RETRY_BACKOFF_MAX", minimum=0)
    # Retry-After is honoured up to this many seconds (a day-long Retry-After must not pin a job).
    retry_after_max: float = setting(120.0, help="longest Retry-After honoured, s",
                                     env="MODELMGR_CIVITAI_RETRY_AFTER_MAX")
    # Consecutive resumes without progress before a download fails.
    max_resumes: int = setting(8, help="consecutive resumes without progress before a download fails",
                               env="MODELMGR_CIVITAI_MAX_RESUMES", minimum=0)
    connect_timeout: float = setting(15.0, help="connect timeout of CivitAI requests, seconds",
                                     env="MODELMGR_CIVITAI_CONNECT_TIMEOUT", positive=True)
    read_timeout: float = setting(60.0, help="read timeout of CivitAI requests, seconds",
                                  env="MODELMGR_CIVITAI_READ_TIMEOUT", positive=True)
    # Free space kept on the volume beyond the file itself.
    disk_reserve_bytes: int = setting(256 * 1024 * 1024, help="free space kept on the volume beyond a download, bytes",
                                      env="MODELMGR_CIVITAI_DISK_RESERVE_BYTES", minimum=0)
    # Finished jobs kept for List/Get.
    max_finished_jobs: int = setting(200, help="finished download jobs kept for List/Get",
                                     env="MODELMGR_CIVITAI_MAX_FINISHED_JOBS", minimum=0)
    user_agent: str = setting("", help="User-Agent sent to CivitAI (a non-browser one)",
                              env="MODELMGR_CIVITAI_USER_AGENT")
    log_level: str = config.log_level_setting()
    log_format: str = config.log_format_setting()

    def validate(self) -> None:
        """After parsing: normalise what the command line may give loosely."""
        self.base_url = self.base_url.rstrip("/")
        self.max_concurrent_downloads = max(1, self.max_concurrent_downloads)
        self.retry_attempts = max(0, self.retry_attempts)
