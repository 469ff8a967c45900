"""`modelmgr duplicates` and `modelmgr du`: the registry's ListDuplicates and GetDiskUsage, the same data
as the web UI's "Library health" section."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from modelmanager.v1 import registry_pb2
from modelmgr.output import console, where
from modelmgr.services import Services
from service_kit.display import human_size, type_name

MAX_BIGGEST = 1_000


def add_parsers(sub: Any) -> None:
    sub.add_parser("duplicates", help="entries that are the same file (one sha256 under several names or roots)")
    p = sub.add_parser("du", help="disk use per type and per root, free space, the biggest files")
    p.add_argument("--biggest", type=int, default=10, help=f"how many of the biggest files to list (1..{MAX_BIGGEST})")


def duplicates_table(groups: list[registry_pb2.DuplicateGroup]) -> Table:
    table = Table("group", "filename", "where", "size", "file", "sha256")
    for i, g in enumerate(groups, 1):
        for e in g.entries:
            # Entries sharing a file number are one file on disk (one inode): deleting one frees nothing.
            file = f"#{e.file_number}" if e.file_number else "[dim]absent[/]"
            table.add_row(str(i), escape(e.model.filename), escape(where(e.model)), human_size(g.size_bytes), file,
                          g.sha256[:12] or "[dim]same inode[/]")
        table.add_section()
    return table


async def cmd_duplicates(s: Services, args: argparse.Namespace) -> int:
    reply = await s.registry.call(s.registry_stub.ListDuplicates, registry_pb2.ListDuplicatesRequest())
    groups = list(reply.groups)
    if groups:
        console.print(duplicates_table(groups))
    entries = sum(len(g.entries) for g in groups)
    console.print(f"{len(groups)} group(s) of duplicates, {entries} entries; "
                  f"{human_size(reply.reclaimable_bytes)} would be freed by keeping one copy of each")
    if reply.unhashed:
        console.print(f"[yellow]{reply.unhashed} entries are not hashed yet[/] (compared by inode only)")
    return 0


def _space(free: int, size: int) -> str:
    return f"{human_size(free)} free of {human_size(size)}" if size else "[dim]unknown[/]"


async def cmd_du(s: Services, args: argparse.Namespace) -> int:
    if not 1 <= args.biggest <= MAX_BIGGEST:
        console.print(f"[red]--biggest must be 1..{MAX_BIGGEST}[/]")
        return 2
    reply = await s.registry.call(s.registry_stub.GetDiskUsage, registry_pb2.GetDiskUsageRequest(biggest=args.biggest))
    types = Table("type", "models", "size")
    for t in reply.by_type:
        types.add_row(type_name(t.type), str(t.model_count), human_size(t.bytes))
    console.print(types)
    roots = Table("root", "path", "models", "size", "filesystem")
    for r in reply.by_root:
        roots.add_row(r.root_id or "volume", escape(r.path) or "[dim](the volume)[/]", str(r.model_count),
                      human_size(r.bytes), _space(r.free_bytes, r.filesystem_bytes))
    console.print(roots)
    if reply.biggest:
        big = Table("biggest files", "type", "size", "where")
        for m in reply.biggest:
            big.add_row(escape(m.filename), type_name(m.type), human_size(m.file_size_bytes), escape(where(m)))
        console.print(big)
    missing = f", {reply.missing_count} file(s) missing" if reply.missing_count else ""
    console.print(f"{reply.model_count} model(s), {human_size(reply.total_bytes)}{missing}; volume: "
                  f"{_space(reply.volume_free_bytes, reply.volume_total_bytes)}")
    return 0
