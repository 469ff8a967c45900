"""What the command line prints: the consoles, its tables and its error lines."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelmanager.v1 import civitai_pb2, model_pb2, registry_pb2
from service_kit.display import human_size, type_name
from service_kit.errors import ServiceError
from service_kit.peer import PeerUnavailable

console = Console()
err_console = Console(stderr=True)


def state_name(state: int) -> str:
    """DOWNLOAD_STATE_SUCCEEDED -> "succeeded"."""
    name: str = civitai_pb2.DownloadState.Name(state)
    return name.removeprefix("DOWNLOAD_STATE_").lower()


# Paths listed per skip reason in an import's summary; the rest are counted.
SKIPPED_SHOWN = 5


def import_state_name(state: int) -> str:
    """IMPORT_STATE_HASHING -> "hashing"."""
    name: str = registry_pb2.ImportState.Name(state)
    return name.removeprefix("IMPORT_STATE_").lower()


def import_mode_name(mode: int) -> str:
    name: str = registry_pb2.ImportMode.Name(mode)
    return name.removeprefix("IMPORT_MODE_").lower()


def where(m: model_pb2.Model) -> str:
    """The root (or "volume") and folder an entry lives in: `r1a2b3c4/styles/ink`."""
    return "/".join(part for part in (m.root_id or "volume", m.folder) if part)


def models_table(models: Iterable[model_pb2.Model]) -> Table:
    table = Table("filename", "type", "name", "base", "trigger words", "weight", "size", "where")
    for m in models:
        # Names come from files, sidecars and CivitAI: shown as text, never as rich markup.
        table.add_row(escape(m.filename), type_name(m.type), escape(m.display_name), escape(m.base_model),
                      escape(", ".join(m.trigger_words)), f"{m.recommended_weight:g}", human_size(m.file_size_bytes),
                      escape(where(m)))
    return table


def roots_table(roots: Iterable[registry_pb2.LibraryRoot]) -> Table:
    table = Table("id", "path", "models", "write-back", "from flag")
    for r in roots:
        table.add_row(r.id, escape(r.path), str(r.model_count), "yes" if r.write_back else "no",
                      "yes" if r.from_flag else "")
    return table


def imports_table(jobs: Iterable[registry_pb2.ImportJob]) -> Table:
    table = Table("job", "path", "mode", "state", "registered", "known", "identified", "skipped")
    for job in jobs:
        table.add_row(job.id, escape(job.path), import_mode_name(job.mode), import_state_name(job.state),
                      str(job.registered), str(job.already_known), str(job.identified), str(len(job.skipped)))
    return table


def import_summary(job: registry_pb2.ImportJob) -> list[str]:
    """What an import did, one line each (rich markup): counts, then the skipped files grouped by reason."""
    lines = [
        f"  registered       {job.registered}",
        f"  already known    {job.already_known}",
        f"  identified       {job.identified}",
        f"  not on CivitAI   {job.not_on_civitai}",
    ]
    if job.identify_failed:
        lines.append(f"  identify failed  {job.identify_failed}")
    lines += [f"  missing          {job.missing}", f"  skipped          {len(job.skipped)}"]
    by_reason: dict[str, list[str]] = defaultdict(list)
    for skipped in job.skipped:
        by_reason[skipped.reason].append(skipped.path)
    for reason, paths in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(escape(p) for p in paths[:SKIPPED_SHOWN])
        more = f" … and {len(paths) - SKIPPED_SHOWN} more" if len(paths) > SKIPPED_SHOWN else ""
        lines.append(f"    {escape(reason)} ({len(paths)}): {shown}{more}")
    if job.identify_note:
        lines.append(f"  [yellow]note:[/] {escape(job.identify_note)}")
    return lines


def downloads_table(jobs: Iterable[civitai_pb2.DownloadJob]) -> Table:
    table = Table("job", "name", "state", "done", "file")
    for job in jobs:
        done = f"{job.bytes_done / job.total_bytes * 100:.0f} %" if job.total_bytes else human_size(job.bytes_done)
        table.add_row(job.id, job.name or job.reference, state_name(job.state), done, job.filename)
    return table


def print_error(err: ServiceError, address: str = "") -> None:
    """`error: CODE / REASON: message`, as the service answered (or as service_kit.peer named a peer
    that did not answer; the operator is told the address the CLI tried)."""
    where = f" (tried {address})" if isinstance(err, PeerUnavailable) and address else ""
    err_console.print(f"[red]error:[/] {err.code.name} / {err.reason}: {escape(err.message)}{escape(where)}")
