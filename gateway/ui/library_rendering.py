"""HTML of the library features: an import's live progress and summary, the roots list, the gallery's cards.

Every name, path, reason and field shown comes from a client's files or from CivitAI: all of it is
escaped here (html.escape, or rendering's md_* helpers), and a card's key travels in a data attribute,
never inside script.
"""

from __future__ import annotations

import html
from collections import defaultdict

from gateway.api_library import highest_level
from gateway.ui.preview_route import preview_url
from gateway.ui.rendering import error_html, progress_html
from modelmanager.v1 import model_pb2, registry_pb2
from service_kit.display import human_size, type_name

LIBRARY_CSS = """
.mm-gallery {display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:10px}
.mm-card {border:1px solid #d1d5db;border-radius:8px;overflow:hidden;cursor:pointer;background:var(--block-background-fill)}
.mm-card:hover, .mm-card:focus {border-color:#2563eb;outline:none}
.mm-card.mm-selected {border:2px solid #2563eb}
.mm-thumb {aspect-ratio:1/1;background:#f3f4f6;display:flex;align-items:center;justify-content:center;overflow:hidden}
.mm-thumb img {width:100%;height:100%;object-fit:cover}
.mm-thumb.mm-blur img {filter:blur(14px)}
.mm-thumb.mm-blur:hover img {filter:blur(6px)}
.mm-nothumb {color:#6b7280;font-size:.85em}
.mm-card-body {padding:6px 8px;font-size:.85em;line-height:1.35}
.mm-card-name {font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.mm-card-meta, .mm-card-triggers {color:#4b5563;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.mm-badge {display:inline-block;font-size:.75em;padding:0 4px;border-radius:4px;background:#fee2e2;color:#991b1b}
.mm-summary td, .mm-summary th {padding:2px 10px 2px 0;text-align:left}
"""

# CivitAI's NSFW bit flags, by their highest bit (Model.nsfw_level and ModelPreview.nsfw_level).
NSFW_LEVELS = {"PG": 1, "PG-13": 2, "R": 4, "X": 8, "XXX": 16}
# Previews rated at least this are "mature": blurred or hidden per the gallery's setting.
MATURE_LEVEL = NSFW_LEVELS["R"]
SKIPPED_SHOWN_PER_REASON = 10


def state_name(state: int) -> str:
    return str(registry_pb2.ImportState.Name(state)).removeprefix("IMPORT_STATE_").lower()


def import_ended(job: registry_pb2.ImportJob) -> bool:
    return job.state in (registry_pb2.IMPORT_STATE_SUCCEEDED, registry_pb2.IMPORT_STATE_FAILED,
                         registry_pb2.IMPORT_STATE_CANCELLED)


# ---------------------------------------------------------------- import progress and summary


def import_progress_html(job: registry_pb2.ImportJob) -> str:
    """Three lines, one per phase: scan (files seen), hash (files and bytes), identify (counts)."""
    scan = progress_html(1 if job.state > registry_pb2.IMPORT_STATE_SCANNING else None,
                         f"Scan: {job.files_seen} file(s) seen, {job.models_found} model file(s)")
    hash_fraction = (job.bytes_hashed / job.bytes_to_hash if job.bytes_to_hash
                     else (1.0 if job.state > registry_pb2.IMPORT_STATE_HASHING else None))
    hashing = progress_html(hash_fraction, f"Hash: {job.files_hashed} of {job.files_to_hash} file(s), "
                                           f"{human_size(job.bytes_hashed)} of {human_size(job.bytes_to_hash)}")
    looked_up = job.identified + job.not_on_civitai + job.identify_failed
    identify = progress_html(1 if job.state > registry_pb2.IMPORT_STATE_IDENTIFYING else None,
                             f"Identify: {job.identified} identified, {job.not_on_civitai} not on CivitAI"
                             + (f", {job.identify_failed} failed" if job.identify_failed else "")
                             + f" ({looked_up} looked up)")
    head = f"<p>Import {html.escape(job.id)} of <code>{html.escape(job.path)}</code>: {state_name(job.state)}</p>"
    return f'<div id="mm-import-phases">{head}{scan}{hashing}{identify}</div>'


def import_summary_html(job: registry_pb2.ImportJob) -> str:
    """The end of an import: what it did, then the skipped files grouped by reason."""
    if job.state == registry_pb2.IMPORT_STATE_FAILED:
        head = error_html(f"Import failed: {job.error or 'unknown error'}"
                          + (f" ({job.error_reason})" if job.error_reason else ""))
    elif job.state == registry_pb2.IMPORT_STATE_CANCELLED:
        head = error_html("Import cancelled.")
    else:
        head = f'<p class="mm-ok">Import of {html.escape(job.path)} done.</p>'
    rows = [("registered", job.registered), ("already known", job.already_known),
            ("identified", job.identified), ("not on CivitAI", job.not_on_civitai),
            ("identification failed", job.identify_failed), ("missing", job.missing),
            ("skipped", len(job.skipped))]
    table = "".join(f"<tr><th>{label}</th><td>{count}</td></tr>" for label, count in rows)
    parts = [head, f'<table class="mm-summary">{table}</table>']
    if job.identify_note:
        parts.append(f'<p class="mm-warn">{html.escape(job.identify_note)}</p>')
    by_reason: dict[str, list[str]] = defaultdict(list)
    for skipped in job.skipped:
        by_reason[skipped.reason].append(skipped.path)
    for reason, paths in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in paths[:SKIPPED_SHOWN_PER_REASON])
        more = len(paths) - SKIPPED_SHOWN_PER_REASON
        parts.append(f"<details><summary>Skipped ({len(paths)}): {html.escape(reason)}</summary>"
                     f"<ul>{shown}</ul>" + (f"<p>… and {more} more</p>" if more > 0 else "") + "</details>")
    return "".join(parts)


def import_html(job: registry_pb2.ImportJob) -> str:
    return import_progress_html(job) + (import_summary_html(job) if import_ended(job) else "")


# ---------------------------------------------------------------- roots


ROOT_HEADERS = ["id", "path", "models", "write-back", "from flag"]


def root_row(root: registry_pb2.LibraryRoot) -> list[str | int]:
    return [root.id, root.path, root.model_count, "on" if root.write_back else "off",
            "yes" if root.from_flag else ""]


# ---------------------------------------------------------------- gallery cards


def card_html(m: model_pb2.Model, mature: str, nsfw_max: int, selected: str = "", extra_badges: str = "") -> str:
    """One card. `mature`: "blur", "hide" or "show" for previews rated R and above; previews above the
    gateway's limit (`nsfw_max`) get no <img> at all (the route would refuse them anyway). Thumbnails load
    at once, not lazily: a page is 48 small cached WebPs, and the first screen should not wait for a scroll."""
    name = m.display_name or m.filename
    level = highest_level(m.preview.nsfw_level)
    thumb = '<div class="mm-thumb mm-nothumb">no preview</div>'
    if m.preview.sha256 and level <= nsfw_max and not (mature == "hide" and level >= MATURE_LEVEL):
        blur = " mm-blur" if mature == "blur" and level >= MATURE_LEVEL else ""
        thumb = (f'<div class="mm-thumb{blur}"><img src="{html.escape(preview_url(m.filename, m.preview.sha256))}" '
                 f'alt="" decoding="async" width="{m.preview.width or 256}" '
                 f'height="{m.preview.height or 256}"></div>')
    elif m.preview.sha256:
        thumb = '<div class="mm-thumb mm-nothumb">preview hidden (NSFW)</div>'
    triggers = ", ".join(m.trigger_words)
    badges = ("" if m.file_present else ' <span class="mm-badge">missing</span>') + extra_badges  # made escaped
    meta = " · ".join(x for x in (type_name(m.type), m.base_model or "?", human_size(m.file_size_bytes)))
    classes = "mm-card mm-selected" if m.filename == selected else "mm-card"
    return (f'<div class="{classes}" role="button" tabindex="0" data-filename="{html.escape(m.filename)}" '
            f'title="{html.escape(m.filename)}">{thumb}<div class="mm-card-body">'
            f'<div class="mm-card-name">{html.escape(name)}{badges}</div>'
            f'<div class="mm-card-meta">{html.escape(meta)}</div>'
            f'<div class="mm-card-triggers">{html.escape(triggers) or "&nbsp;"}</div></div></div>')


def gallery_html(models: list[model_pb2.Model], mature: str, nsfw_max: int, selected: str = "",
                 badges: dict[str, str] | None = None) -> str:
    """The cards; `badges`: HTML (already escaped, from browser_rendering) per filename, e.g. an update's."""
    if not models:
        return '<div class="mm-gallery-empty">No models match.</div>'
    badges = badges or {}
    return ('<div class="mm-gallery">' + "".join(card_html(m, mature, nsfw_max, selected, badges.get(m.filename, ""))
                                                 for m in models) + "</div>")


def card_click_js(field: str, data_attribute: str) -> str:
    """`js_on_load` for a gr.HTML of cards: a click (or Enter / Space) on a card marks it selected and
    sends `{field: card.dataset[data_attribute]}` as the event's data. The value comes from an escaped
    data attribute, never from the script."""
    return f"""
element.addEventListener('click', (event) => {{
  const card = event.target.closest('.mm-card');
  if (!card || !element.contains(card)) return;
  element.querySelectorAll('.mm-card.mm-selected').forEach(c => c.classList.remove('mm-selected'));
  card.classList.add('mm-selected');
  trigger('click', {{{field}: card.dataset.{data_attribute}}});
}});
element.addEventListener('keydown', (event) => {{
  const card = event.target.closest('.mm-card');
  if (card && (event.key === 'Enter' || event.key === ' ')) {{
    event.preventDefault();
    trigger('click', {{{field}: card.dataset.{data_attribute}}});
  }}
}});
"""
