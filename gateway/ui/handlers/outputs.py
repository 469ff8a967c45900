"""Outputs: the history of saved Generate and Upscale results (newest first, paged), one opened with its
parameters, its parameters put back into the Generate form, its image sent to Upscale, downloaded, deleted.

Images come from the inference service over gRPC (GetOutput) and are handed to Gradio as files this
login owns: written under the UI's upload folder, in a folder of this login, and recorded in
UploadedFiles for it. So the guard lets the browser send them back (a gallery selection, the Upscale
input) and refuses them to every other login, the images work behind the UI login without the API key,
and no client ever names a file: an output is named by its id, which only the service's answers give.
"""

from __future__ import annotations

import asyncio
import html
import io
import os
import re
import secrets
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from gateway.ui.error_display import NeedsInput, shows_errors
from gateway.ui.guard import client_of
from gateway.ui.handlers.generate import ACTIVE_CHECKPOINT
from gateway.ui.rendering import error_html, md_text, ok_html
from gateway.ui.services import UiServices
from modelmanager.v1 import inference_pb2

PAGE_SIZE = 12
THUMB_EDGE = 256
FETCHES_AT_ONCE = 4  # GetOutput calls for a page's thumbnails
FOLDER = "mm-outputs"  # under the upload folder; Gradio's own upload folders are hex digests
# The service's ids (time-ordered, "20250101T120000123456Z-1a2b3c4d"); anything else never becomes a file name.
SAFE_ID = re.compile(r"[0-9A-Za-z_-]{1,80}")
NOTHING_OPEN = "Open an output in the history first."


def client_of_request(request: gr.Request | None) -> str:
    """The login an event came from, as the guard names it (the same cookies, the same digest)."""
    raw = getattr(request, "request", None) if request is not None else None
    if raw is None:  # Gradio always passes the HTTP request of the event; without it nothing is owned
        raise NeedsInput("Reload the page.")
    return client_of(raw.scope)


def safe_id(output_id: str) -> str:
    if not SAFE_ID.fullmatch(output_id or ""):
        raise NeedsInput("That is not an output id.")
    return output_id


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _thumbnail(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        image.thumbnail((THUMB_EDGE, THUMB_EDGE))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="WEBP", quality=85)
        return out.getvalue()


def output_caption(o: inference_pb2.Output) -> str:
    return f"{o.kind} · {o.width}×{o.height} · seed {o.parameters.seed}"


def output_markdown(o: inference_pb2.Output) -> str:
    """An output's parameters; every text from the service is escaped (it came from some client's prompt)."""
    p = o.parameters
    created = o.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC") if o.HasField("created_at") else "?"
    loras = ", ".join(f"{md_text(lora.filename)}: {lora.weight:g}" for lora in p.loras) or "(none)"
    lines = [
        f"**{md_text(o.kind)}** · {o.width}×{o.height} · {created} · id {md_text(o.id)}  ",
        f"**Prompt:** {md_text(p.prompt) or '(empty)'}  ",
        f"**Negative prompt:** {md_text(p.negative_prompt) or '(none)'}  ",
        f"**Final prompt:** {md_text(p.final_prompt) or '(empty)'}  ",
        f"**Steps** {p.steps} · **CFG** {p.guidance_scale:g} · **Seed** {p.seed} · "
        f"**Scheduler** {md_text(p.scheduler) or 'default'}  ",
        f"**Checkpoint:** {md_text(p.checkpoint) or '?'}" + (f" ({md_text(p.checkpoint_hash)})"
                                                            if p.checkpoint_hash else "") + "  ",
        f"**LoRAs:** {loras}  ",
    ]
    if o.kind == "upscale":
        lines.append(f"**Scale** {p.scale_factor:g} · **Strength** {p.strength:g} · **Tile** {p.tile_size} "
                     f"(overlap {p.tile_overlap}) · ControlNet {'yes' if p.controlnet else 'no'}  ")
    if o.infotext:
        lines.append(f"<details><summary>PNG infotext</summary><pre>{html.escape(o.infotext)}</pre></details>")
    return "\n".join(lines)


def first_page() -> dict[str, Any]:
    """The pager state: the tokens of the pages seen (the first is ""), and the next page's."""
    return {"tokens": [""], "next": ""}


# What a page shows: (gallery, ids on it, pager, status, "Newer" button, "Older" button).
PageView = tuple[Any, list[str], dict[str, Any], str, Any, Any]
# What opening one shows: (image, parameters, opened id, download button, message).
OpenView = tuple[Any, str, str, Any, str]
NOT_OPEN: OpenView = (None, "", "", gr.update(value=None, interactive=False), "")


def _page_failed(message: str) -> PageView:
    return gr.update(), [], first_page(), error_html(message), gr.update(), gr.update()


def _open_failed(message: str) -> OpenView:
    return (*NOT_OPEN[:4], error_html(message))


# The Generate form, in order: prompt, negative, width, height, steps, guidance, seed, scheduler,
# checkpoint, LoRA selection applied to the rows, the selection itself; then the message and the tabs.
REUSE_FIELDS = 11


def _reuse_failed(message: str) -> tuple[Any, ...]:
    return (*(gr.update() for _ in range(REUSE_FIELDS)), error_html(message), gr.update())


class OutputHandlers:
    def __init__(self, services: UiServices) -> None:
        self.services = services

    # ------------------------------------------------------------ files this login owns

    def _folder(self, client: str) -> Path:
        return self.services.uploads.root / FOLDER / (client[:32] or "open")

    async def _owned(self, path: Path, client: str, data: bytes | None = None) -> str:
        """`path` (written from `data` unless it is already there) recorded as this client's."""
        if data is not None:
            await asyncio.to_thread(_write_atomic, path, data)
        self.services.uploads.add(str(path), client)
        return str(path)

    async def _get(self, output_id: str, *, with_image: bool = True) -> inference_pb2.GetOutputResponse:
        req = inference_pb2.GetOutputRequest(id=output_id, without_image=not with_image)
        return await self.services.unary("inference", "GetOutput", req)

    async def _image_file(self, output_id: str, client: str) -> str:
        """The output's full PNG as a file of this client."""
        path = self._folder(client) / f"{safe_id(output_id)}.png"
        if await asyncio.to_thread(path.is_file):  # an output never changes: a copy made before is the same
            return await self._owned(path, client)
        return await self._owned(path, client, (await self._get(output_id)).png)

    async def _thumb_file(self, output_id: str, client: str, gate: asyncio.Semaphore) -> str:
        path = self._folder(client) / f"{safe_id(output_id)}.thumb.webp"
        if await asyncio.to_thread(path.is_file):
            return await self._owned(path, client)
        async with gate:
            png = (await self._get(output_id)).png
        return await self._owned(path, client, await asyncio.to_thread(_thumbnail, png))

    # ------------------------------------------------------------ the history, paged

    @shows_errors(_page_failed)
    async def show_page(self, pager: dict[str, Any] | None, request: gr.Request) -> PageView:
        """The page `pager` is on (its last token), with thumbnails."""
        client = client_of_request(request)
        pager = pager if pager and pager.get("tokens") else first_page()
        tokens = list(pager["tokens"])
        resp = await self.services.unary("inference", "ListOutputs", inference_pb2.ListOutputsRequest(
            page_size=PAGE_SIZE, page_token=tokens[-1]))
        shown = [o for o in resp.outputs if SAFE_ID.fullmatch(o.id)]
        gate = asyncio.Semaphore(FETCHES_AT_ONCE)
        thumbs = await asyncio.gather(*(self._thumb_file(o.id, client, gate) for o in shown))
        gallery = [(thumb, output_caption(o)) for thumb, o in zip(thumbs, shown, strict=True)]
        number = len(tokens)
        if not shown:
            status = "No outputs yet: every Generate and Upscale result is kept here." if number == 1 else "No more."
        else:
            status = f"Page {number}: {len(shown)} output(s), newest first."
        new_pager = {"tokens": tokens, "next": resp.next_page_token}
        return (gallery, [o.id for o in shown], new_pager, status, gr.update(interactive=number > 1),
                gr.update(interactive=bool(resp.next_page_token)))

    async def newest(self, request: gr.Request) -> PageView:
        """The first page (after a Generate or Upscale, on "Refresh")."""
        return await self.show_page(first_page(), request)

    async def older(self, pager: dict[str, Any] | None, request: gr.Request) -> PageView:
        pager = pager if pager and pager.get("tokens") else first_page()
        if pager.get("next"):
            pager = {"tokens": [*pager["tokens"], pager["next"]], "next": ""}
        return await self.show_page(pager, request)

    async def newer(self, pager: dict[str, Any] | None, request: gr.Request) -> PageView:
        pager = pager if pager and pager.get("tokens") else first_page()
        tokens = pager["tokens"][:-1] or [""]
        return await self.show_page({"tokens": tokens, "next": ""}, request)

    # ------------------------------------------------------------ one output

    async def open_selected(self, evt: gr.SelectData, ids: list[str] | None, request: gr.Request) -> OpenView:
        # The page's ids are server-side state; the event only says which thumbnail was clicked.
        index = evt.index if isinstance(evt.index, int) else -1
        if not ids or not 0 <= index < len(ids):
            return (*NOT_OPEN[:4], NOTHING_OPEN)
        return await self.open(ids[index], request)

    @shows_errors(_open_failed)
    async def open(self, output_id: str, request: gr.Request) -> OpenView:
        client = client_of_request(request)
        resp = await self._get(safe_id(output_id), with_image=False)
        image = await self._image_file(output_id, client)
        return (image, output_markdown(resp.output), output_id, gr.update(value=image, interactive=True), "")

    @shows_errors(_reuse_failed)
    async def reuse(self, output_id: str, applied: dict[str, Any] | None) -> tuple[Any, ...]:
        """The output's parameters into the Generate form; LoRAs no longer installed are named, not selected."""
        if not output_id:
            raise NeedsInput(NOTHING_OPEN)
        o = (await self._get(safe_id(output_id), with_image=False)).output
        p = o.parameters
        installed = {m.filename for m in await self.services.list_models("LoRAs", "")}
        selection = {lora.filename: round(lora.weight, 2) for lora in p.loras if lora.filename in installed}
        missing = [lora.filename for lora in p.loras if lora.filename not in installed]
        schedulers = (await self.services.unary("inference", "ListSchedulers",
                                                inference_pb2.ListSchedulersRequest())).schedulers
        notes = []
        scheduler = p.scheduler or "default"
        if scheduler != "default" and scheduler not in schedulers:
            notes.append(f"scheduler {p.scheduler} is not offered now (default used)")
            scheduler = "default"
        if missing:
            notes.append("not installed now: " + ", ".join(missing))
        # An upscale's size is the enlarged image's: not a Generate size.
        width, height = (o.width, o.height) if o.kind == "generate" else (gr.update(), gr.update())
        version = int((applied or {}).get("version", 0)) + 1
        checkpoint = p.checkpoint or ACTIVE_CHECKPOINT
        message = ok_html("Parameters put into the Generate form" + (f" ({'; '.join(notes)})." if notes else "."))
        return (p.prompt, p.negative_prompt, width, height, p.steps, p.guidance_scale, p.seed,
                gr.update(choices=["default", *schedulers], value=scheduler),
                gr.update(choices=[ACTIVE_CHECKPOINT, *([p.checkpoint] if p.checkpoint else [])], value=checkpoint),
                {"version": version, "selected": selection}, selection, message, gr.update(selected="generate"))

    @shows_errors(lambda message: (gr.update(), error_html(message), gr.update()))
    async def send_to_upscale(self, output_id: str, request: gr.Request) -> tuple[Any, str, Any]:
        """The output's image as the Upscale input (a file this client owns, so the guard takes it back)."""
        if not output_id:
            raise NeedsInput(NOTHING_OPEN)
        image = await self._image_file(output_id, client_of_request(request))
        return image, ok_html("Sent to the Upscale tab."), gr.update(selected="upscale")

    @shows_errors(_open_failed)
    async def delete(self, output_id: str) -> OpenView:
        if not output_id:
            raise NeedsInput(NOTHING_OPEN)
        await self.services.unary("inference", "DeleteOutput",
                                  inference_pb2.DeleteOutputRequest(id=safe_id(output_id)))
        await asyncio.to_thread(self._forget, output_id)
        return (*NOT_OPEN[:4], ok_html(f"Deleted output {output_id}."))

    def _forget(self, output_id: str) -> None:
        """Every login's copies of a deleted output (the guard then refuses them: they are no files)."""
        for path in (self.services.uploads.root / FOLDER).glob(f"*/{output_id}.*"):
            path.unlink(missing_ok=True)
