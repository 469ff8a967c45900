"""Library health as HTML: duplicate groups, disk use per type and root, free space, the biggest files.
Every name comes from files, sidecars or CivitAI: escaped here, never put in the page as it is."""

from __future__ import annotations

import html

from modelmanager.v1 import model_pb2, registry_pb2
from service_kit.display import human_size, type_name


def where(m: model_pb2.Model) -> str:
    return "/".join(part for part in (m.root_id or "volume", m.folder) if part)


def duplicates_html(reply: registry_pb2.ListDuplicatesResponse) -> str:
    if not reply.groups:
        note = f" ({reply.unhashed} not hashed yet)" if reply.unhashed else ""
        return f'<p class="mm-ok">No duplicates{html.escape(note)}.</p>'
    parts = [f'<p><b>{len(reply.groups)}</b> group(s) of duplicates; keeping one copy of each would free '
             f'<b>{human_size(reply.reclaimable_bytes)}</b>.</p>']
    for g in reply.groups:
        rows = "".join(
            f"<tr><td>{html.escape(e.model.filename)}</td><td>{html.escape(where(e.model))}</td>"
            f"<td>{'file #' + str(e.file_number) if e.file_number else 'absent'}</td></tr>" for e in g.entries)
        label = html.escape(g.sha256[:12]) if g.sha256 else "same inode"
        parts.append(f'<details open class="mm-dup"><summary>{label} · {human_size(g.size_bytes)} each · '
                     f'frees {human_size(g.reclaimable_bytes)}</summary><table><tr><th>entry</th><th>where</th>'
                     f'<th>file on disk</th></tr>{rows}</table></details>')
    return "".join(parts)


def _space(free: int, size: int) -> str:
    return f"{human_size(free)} free of {human_size(size)}" if size else "unknown"


def disk_usage_html(reply: registry_pb2.GetDiskUsageResponse) -> str:
    types = "".join(f"<tr><td>{type_name(t.type)}</td><td>{t.model_count}</td><td>{human_size(t.bytes)}</td></tr>"
                    for t in reply.by_type)
    roots = "".join(
        f"<tr><td>{html.escape(r.path) or 'the volume'}</td><td>{r.model_count}</td><td>{human_size(r.bytes)}</td>"
        f"<td>{_space(r.free_bytes, r.filesystem_bytes)}</td></tr>" for r in reply.by_root)
    big = "".join(f"<tr><td>{html.escape(m.filename)}</td><td>{type_name(m.type)}</td>"
                  f"<td>{human_size(m.file_size_bytes)}</td><td>{html.escape(where(m))}</td></tr>"
                  for m in reply.biggest)
    missing = f" · {reply.missing_count} file(s) missing" if reply.missing_count else ""
    return (f'<p class="mm-disk-total"><b>{reply.model_count}</b> model(s), <b>{human_size(reply.total_bytes)}</b>'
            f'{missing} · volume: <b>{_space(reply.volume_free_bytes, reply.volume_total_bytes)}</b></p>'
            f'<table class="mm-disk-types"><tr><th>type</th><th>models</th><th>size</th></tr>{types}</table>'
            f'<table class="mm-disk-roots"><tr><th>root</th><th>models</th><th>size</th><th>filesystem</th></tr>'
            f'{roots}</table>'
            f'<table class="mm-disk-biggest"><tr><th>biggest files</th><th>type</th><th>size</th><th>where</th></tr>'
            f'{big}</table>')
