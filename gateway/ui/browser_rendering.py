"""HTML of the CivitAI browser and of updates: result cards, CivitAI images through the gateway's proxy,
"installed" / "update available" / "early access" badges.

Everything here comes from CivitAI: names, versions, base models, image URLs. All of it is escaped
(html.escape, rendering's md_* helpers); an image's URL only ever appears as the proxy route's
parameter, so the browser never loads anything from CivitAI itself. A card's key (the model id, an
integer) travels in a data attribute, never inside script.
"""

from __future__ import annotations

import html

from gateway.image_proxy import ui_image_url
from gateway.ui.library_rendering import MATURE_LEVEL
from gateway.ui.rendering import md_code, md_link, md_text, ok_html
from modelmanager.v1 import civitai_pb2
from service_kit.display import human_size, type_name

BROWSER_CSS = """
.mm-badge.mm-installed {background:#dcfce7;color:#166534}
.mm-badge.mm-update {background:#dbeafe;color:#1e40af}
.mm-badge.mm-early {background:#fef3c7;color:#92400e}
.mm-card-stats {color:#4b5563;font-size:.9em}
"""

# What a card's badges say about a CivitAI model, given what is installed.
INSTALLED, UPDATE_AVAILABLE = "installed", "update available"


def first_image(info: civitai_pb2.CivitaiModelInfo, nsfw_max: int) -> civitai_pb2.PreviewImage | None:
    """The first still image rated at most `nsfw_max` (a level of 0, unknown, is shown)."""
    return next((i for i in info.images if i.type in ("", "image") and i.url and i.nsfw_level <= nsfw_max), None)


def proxied_img(url: str, alt: str, style: str = "", lazy: bool = True) -> str:
    """An <img> of a CivitAI image loaded through the gateway (never from CivitAI's host)."""
    extra = ' loading="lazy" decoding="async"' if lazy else ""
    return (f'<img src="{html.escape(ui_image_url(url))}" alt="{html.escape(alt)}"{extra} '
            f'referrerpolicy="no-referrer"' + (f' style="{style}"' if style else "") + ">")


def civitai_preview_html(info: civitai_pb2.CivitaiModelInfo, nsfw_max: int) -> str:
    """Fetch Info's preview: the version's first image, through the proxy."""
    image = first_image(info, nsfw_max)
    if image is None:
        return "(no preview image)" if not info.images else "(preview hidden: NSFW)"
    return (proxied_img(image.url, "preview image", "max-height:220px;max-width:100%;border-radius:6px", lazy=False)
            .removesuffix(">") + " onerror=\"this.replaceWith('(preview image unavailable)')\">")


def stats_text(stats: civitai_pb2.CivitaiStats) -> str:
    parts = [f"⬇ {stats.download_count:,}"]
    if stats.rating_count:
        parts.append(f"★ {stats.rating:.1f} ({stats.rating_count:,})")
    if stats.thumbs_up_count or stats.thumbs_down_count:
        parts.append(f"👍 {stats.thumbs_up_count:,}")
    return " · ".join(parts)


def badge(kind: str, text: str) -> str:
    return f'<span class="mm-badge mm-{kind}">{html.escape(text)}</span>'


def browse_card_html(info: civitai_pb2.CivitaiModelInfo, state: str, nsfw_max: int, mature: str = "blur",
                     selected: int = 0) -> str:
    """One search result: its first image, name, type · base, stats and the installed/update badge."""
    image = first_image(info, nsfw_max)
    if image is None:
        thumb = '<div class="mm-thumb mm-nothumb">no preview</div>'
    elif mature == "hide" and image.nsfw_level >= MATURE_LEVEL:
        thumb = '<div class="mm-thumb mm-nothumb">preview hidden (NSFW)</div>'
    else:
        blur = " mm-blur" if mature == "blur" and image.nsfw_level >= MATURE_LEVEL else ""
        thumb = f'<div class="mm-thumb{blur}">{proxied_img(image.url, "")}</div>'
    badges = ""
    if state == INSTALLED:
        badges = " " + badge("installed", INSTALLED)
    elif state == UPDATE_AVAILABLE:
        badges = " " + badge("update", UPDATE_AVAILABLE)
    if info.early_access_deadline.seconds:
        badges += " " + badge("early", "early access")
    meta = " · ".join(x for x in (info.civitai_type, info.base_model or "?") if x)
    classes = "mm-card mm-selected" if selected and info.model_id == selected else "mm-card"
    return (f'<div class="{classes}" role="button" tabindex="0" data-model-id="{info.model_id}" '
            f'title="{html.escape(info.name)}">{thumb}<div class="mm-card-body">'
            f'<div class="mm-card-name">{html.escape(info.name)}{badges}</div>'
            f'<div class="mm-card-meta">{html.escape(meta)}</div>'
            f'<div class="mm-card-stats">{html.escape(stats_text(info.stats))}</div></div></div>')


def browse_cards_html(cards: list[str]) -> str:
    if not cards:
        return '<div class="mm-gallery-empty">Nothing on CivitAI matches.</div>'
    return '<div class="mm-gallery">' + "".join(cards) + "</div>"


def version_label(v: civitai_pb2.CivitaiVersion) -> str:
    published = v.published_at.ToDatetime().date().isoformat() if v.published_at.seconds else ""
    return " · ".join(x for x in (v.name or str(v.id), v.base_model, published) if x)


def browse_details_markdown(info: civitai_pb2.CivitaiModelInfo, installed_as: str) -> str:
    lines = [
        f"### {md_text(info.name)}" + (f" — {md_text(info.version_name)}" if info.version_name else ""),
        f"**Type:** {md_text(info.civitai_type)} ({type_name(info.model_type)}) · "
        f"**Base model:** {md_text(info.base_model) or '?'} · **By:** {md_text(info.creator) or '?'}  ",
        f"**Trigger words:** {md_code(info.trigger_words) if info.trigger_words else '(none)'}  ",
        f"**File:** {md_text(info.file.name) or '?'} · {human_size(info.file.size_bytes)}  ",
        f"**Stats:** {md_text(stats_text(info.stats))}  ",
        md_link("Open on CivitAI", info.civitai_url),
    ]
    if info.early_access_deadline.seconds:
        lines.append(f'\n<p class="mm-warn">This version is in early access until '
                     f"{info.early_access_deadline.ToDatetime().date().isoformat()}: downloading it needs early "
                     "access on CivitAI.</p>")
    if not info.supported:
        lines.append(f'\n<p class="mm-error">This type ({html.escape(info.civitai_type)}) cannot be installed.</p>')
    if installed_as:
        lines.append("\n" + ok_html(f"This version is installed as {installed_as}."))
    return "\n".join(lines)


# ---------------------------------------------------------------- updates


def update_badges_html(u: civitai_pb2.ModelUpdate) -> str:
    """A gallery card's badges for its last update check: nothing unless an update is there and not ignored."""
    if not (u.checked and u.update_available) or u.ignored:
        return ""
    text = f"update: {u.latest_version_name or u.latest_version_id}"
    return " " + badge("update", text) + (" " + badge("early", "early access") if u.early_access else "")


UPDATE_HEADERS = ["file", "installed", "latest", "base", "published", "state"]


def update_state(u: civitai_pb2.ModelUpdate) -> str:
    if not u.checked:
        return "not checked (CivitAI did not answer for it)"
    if not u.update_available:
        return "up to date"
    if u.ignored:
        return "ignored"
    if u.early_access:
        deadline = u.early_access_deadline.ToDatetime().date().isoformat() if u.early_access_deadline.seconds else ""
        return "early access" + (f" until {deadline}" if deadline else "")
    return "update available"


def update_row(u: civitai_pb2.ModelUpdate) -> list[str]:
    published = u.latest_published_at.ToDatetime().date().isoformat() if u.latest_published_at.seconds else ""
    return [u.filename, u.installed_version_name or str(u.installed_version_id),
            u.latest_version_name or (str(u.latest_version_id) if u.latest_version_id else ""),
            u.latest_base_model, published, update_state(u)]
