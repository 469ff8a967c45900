"""What the UI shows, as Markdown/HTML text: escaping of untrusted text, progress bars, messages.

Everything from CivitAI, a client or a service is untrusted: it goes through md_text / md_code /
md_link / html.escape here, never into the page as it is.
"""

from __future__ import annotations

import html
import re

from modelmanager.v1 import civitai_pb2, inference_pb2, model_pb2, registry_pb2
from service_kit.display import human_size, type_name

CSS = """
.mm-progress {background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden;margin:4px 0}
.mm-progress > div {background:#2563eb;height:100%;transition:width .2s}
.mm-error {color:#b91c1c;font-weight:600}
.mm-ok {color:#15803d;font-weight:600}
.mm-warn {background:#fef3c7;border-left:4px solid #d97706;padding:6px 10px;border-radius:4px}
"""

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md_text(text: str) -> str:
    """Text from CivitAI or a client, shown literally inside Markdown: no HTML, no links, no emphasis."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text or "", quote=False))


def md_code(words: list[str] | tuple[str, ...]) -> str:
    """Words as escaped inline code ('—' when none); a backtick in a word cannot end the span."""
    return ", ".join(f"<code>{html.escape(w)}</code>" for w in words) or "—"


def md_link(label: str, url: str) -> str:
    """A link only to an https URL (never javascript: or data:), its label and target escaped."""
    if not url.startswith("https://"):
        return ""
    return f'<a href="{html.escape(url)}" target="_blank" rel="noopener noreferrer">{html.escape(label)}</a>'


def error_html(text: str) -> str:
    return f'<p class="mm-error">⚠ {html.escape(text)}</p>'


def ok_html(text: str) -> str:
    return f'<p class="mm-ok">{html.escape(text)}</p>'


def progress_html(fraction: float | None, text: str) -> str:
    pct = 0.0 if fraction is None else max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="mm-progress"><div style="width:{pct:.1f}%"></div></div>'
            f"<div>{html.escape(text)}</div>")


# ---------------------------------------------------------------- CivitAI


def civitai_info_markdown(info: civitai_pb2.CivitaiModelInfo) -> str:
    lines = [
        f"### {md_text(info.name)}" + (f" — {md_text(info.version_name)}" if info.version_name else ""),
        f"**Type:** {md_text(info.civitai_type)} ({type_name(info.model_type)})  ",
        f"**Base model:** {md_text(info.base_model) or '?'}  ",
        f"**Trigger words:** {md_code(info.trigger_words) if info.trigger_words else '(none)'}  ",
        f"**File:** {md_text(info.file.name)} · {human_size(info.file.size_bytes)}  ",
        f"**Recommended weight:** {info.recommended_weight:g}  ",
        md_link("Open on CivitAI", info.civitai_url),
    ]
    if not info.supported:
        lines.append(f'\n<p class="mm-error">This type ({html.escape(info.civitai_type)}) cannot be installed: '
                     "only LoRA, LoCon, DoRA, Checkpoint, TextualInversion, VAE and Upscaler.</p>")
    if info.installed_filename:
        lines.append("\n" + ok_html(f"Already installed as {info.installed_filename}."))
    return "\n".join(lines)


def job_state(job: civitai_pb2.DownloadJob) -> str:
    return str(civitai_pb2.DownloadState.Name(job.state)).removeprefix("DOWNLOAD_STATE_").lower()


def job_html(job: civitai_pb2.DownloadJob) -> str:
    name = job.name or job.reference
    if job.state == civitai_pb2.DOWNLOAD_STATE_SUCCEEDED:
        what = "already installed" if job.already_installed else "installed"
        return progress_html(1, f"✓ {name}: {what} as {job.filename or job.model.filename}")
    if job.state == civitai_pb2.DOWNLOAD_STATE_FAILED:
        return error_html(f"{name}: download failed: {job.error.message or 'unknown error'}")
    if job.state == civitai_pb2.DOWNLOAD_STATE_CANCELLED:
        return error_html(f"{name}: cancelled")
    fraction = job.bytes_done / job.total_bytes if job.total_bytes else None
    text = f"{name}: {job_state(job)} — {human_size(job.bytes_done)}"
    if fraction is not None:
        text += f" of {human_size(job.total_bytes)} ({fraction * 100:.0f} %)"
    if job.bytes_per_second:
        text += f" · {human_size(job.bytes_per_second)}/s"
    if job.eta_seconds > 0:
        text += f" · {job.eta_seconds:.0f} s left"
    return progress_html(fraction, text)


# ---------------------------------------------------------------- installed models


def model_facts(m: model_pb2.Model) -> str:
    return (f"**{md_text(m.filename)}** · {type_name(m.type)} · {md_text(m.base_model) or '?'} · "
            f"{human_size(m.file_size_bytes)} · sha256 {md_code([m.sha256[:12]])}…"
            + (f" · {md_link('CivitAI', m.civitai_url)}" if m.civitai_url else ""))


def checkpoint_loaded(r: inference_pb2.LoadResult) -> str:
    return progress_html(1, f"✓ {r.checkpoint} loaded in {r.load_seconds:.1f} s (from {r.loaded_from}, "
                            f"{human_size(r.size_bytes)})")


# ---------------------------------------------------------------- Generate / Upscale


def composed_prompt(resp: registry_pb2.ComposePromptResponse) -> str:
    added = ", ".join(resp.injected_trigger_words)
    return (f"**Final prompt:** {html.escape(resp.prompt) or '(empty)'}"
            + (f"  \n<small>added trigger words: {html.escape(added)}</small>" if added else ""))


def job_progress(p: inference_pb2.JobProgress) -> str:
    if p.total_tiles:
        frac: float | None = ((p.tile - 1) + (p.step / p.total_steps if p.total_steps else 0)) / p.total_tiles
        text = f"{p.stage}: tile {p.tile}/{p.total_tiles}, step {p.step}/{p.total_steps}"
    else:
        frac = p.step / p.total_steps if p.total_steps else None
        text = f"{p.stage}: step {p.step}/{p.total_steps}" if p.total_steps else p.stage
    return progress_html(frac, text)


def image_info(r: inference_pb2.ImageResult) -> str:
    used = "".join(f" · {what} {md_code(names)}" for what, names in (
        ("VAE", [r.vae] if r.vae else []), ("upscaler", [r.upscaler] if r.upscaler else []),
        ("embeddings", list(r.embeddings))) if names)
    return (f"**Seed** {r.seed} · **{r.width}×{r.height}** · checkpoint `{r.checkpoint}`{used} · "
            f"{r.timings.total_seconds:.1f} s  \n**Final prompt:** {html.escape(r.final_prompt)}")
