"""What the command line prints: the consoles, its tables and its error lines."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelmanager.v1 import civitai_pb2, model_pb2
from service_kit.display import human_size, type_name
from service_kit.errors import ServiceError
from service_kit.peer import PeerUnavailable

console = Console()
err_console = Console(stderr=True)


def state_name(state: int) -> str:
    """DOWNLOAD_STATE_SUCCEEDED -> "succeeded"."""
    name: str = civitai_pb2.DownloadState.Name(state)
    return name.removeprefix("DOWNLOAD_STATE_").lower()


def models_table(models: Iterable[model_pb2.Model]) -> Table:
    table = Table("filename", "type", "name", "base", "trigger words", "weight", "size")
    for m in models:
        table.add_row(m.filename, type_name(m.type), m.display_name, m.base_model, ", ".join(m.trigger_words),
                      f"{m.recommended_weight:g}", human_size(m.file_size_bytes))
    return table


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
