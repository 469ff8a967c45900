"""Settings of the registry, each declared once: default, flag, MODELMGR_* variable, help."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from metadata_svc.file_hashes import DEFAULT_WORKERS
from service_kit.config import (
    DEFAULT_CIVITAI,
    DEFAULT_REGISTRY,
    CliSettings,
    listen_setting,
    log_format_setting,
    log_level_setting,
    models_dir_setting,
    setting,
    user_models_dir_setting,
)

GIB = 1024**3


@dataclass
class RegistrySettings(CliSettings):
    CLI_PROG: ClassVar[str] = "python -m metadata_svc"
    CLI_DESCRIPTION: ClassVar[str] = "SDXL model registry"

    listen: str = listen_setting("MODELMGR_REGISTRY_LISTEN", DEFAULT_REGISTRY)
    user_models_dir: Path = user_models_dir_setting()
    models_dir: Path = models_dir_setting()
    # Uploads larger than this are refused while they stream (RESOURCE_EXHAUSTED / UPLOAD_TOO_LARGE).
    max_upload_bytes: int = setting(50 * GIB, help="largest upload accepted, in bytes",
                                    env="MODELMGR_MAX_UPLOAD_BYTES", positive=True)
    # An upload whose client sends nothing for this long is abandoned (its .part removed, its name freed),
    # so a stalled client cannot hold a name and a file descriptor for ever. Longer than the gateway's.
    upload_idle_timeout: float = setting(
        120.0, help="abandon an upload whose client sends nothing for this many seconds",
        env="MODELMGR_UPLOAD_IDLE_TIMEOUT", positive=True)
    # .ckpt/.pt/.pth/.bin files unpickle on load, which can run code; refused unless enabled.
    allow_pickle: bool = setting(
        False, help="accept pickle formats (.ckpt/.pt/.pth/.bin), which can run code when loaded",
        env="MODELMGR_ALLOW_PICKLE")
    # Library roots (issue 12): folders indexed in place. Flag roots are added at every start, always allowed.
    library_root: list[str] = setting(
        default_factory=list, help="library root(s) to index in place, comma-separated (added at start)",
        env="MODELMGR_LIBRARY_ROOT")
    # A client may add a root (AddLibraryRoot, StartImport) only under these folders.
    library_allow: list[str] = setting(
        default_factory=lambda: [str(Path.home())],
        help="folders under which a client may add library roots, comma-separated",
        env="MODELMGR_LIBRARY_ALLOW")
    # Imports identify files through the CivitAI service's IdentifyFiles (the gateway's default address).
    civitai: str = setting(DEFAULT_CIVITAI, help="CivitAI service address, HOST:PORT", env="MODELMGR_CIVITAI_ADDR")
    hash_workers: int = setting(DEFAULT_WORKERS, help="files hashed at once by an import (1 for a spinning disk)",
                                env="MODELMGR_HASH_WORKERS", positive=True)
    # The index's store (index_store.py): an index this large takes writes through the journal, smaller ones
    # are rewritten whole (0: always the journal; a huge value: always whole rewrites, the old store).
    index_journal_from_bytes: int = setting(
        1024 * 1024, help="index size from which changes go to the journal instead of a whole rewrite",
        env="MODELMGR_INDEX_JOURNAL_FROM_BYTES", minimum=0)
    # How far .metadata.json may lag the journal when writes stop: compacted this long after the last one.
    index_compact_idle: float = setting(
        5.0, help="compact the journal into .metadata.json this many seconds after the last write",
        env="MODELMGR_INDEX_COMPACT_IDLE", positive=True)
    log_level: str = log_level_setting()
    log_format: str = log_format_setting()
