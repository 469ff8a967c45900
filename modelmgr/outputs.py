"""`modelmgr outputs`: the inference service's saved Generate and Upscale results.

    modelmgr outputs [--limit N]          newest first
    modelmgr outputs get ID [-o FILE]     the PNG (its A1111 infotext inside) and its parameters
    modelmgr outputs delete ID
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from modelmanager.v1 import inference_pb2
from modelmgr.output import console
from modelmgr.services import Services
from service_kit.display import human_size
from service_kit.peer import paged

LIST_PAGE_SIZE = 100
PROMPT_SHOWN = 60


def add_parser(sub: Any) -> None:
    p = sub.add_parser("outputs", help="saved Generate/Upscale results (list; get ID -o FILE; delete ID)")
    p.add_argument("--limit", type=int, default=50, help="list at most this many, newest first (0: all)")
    commands = p.add_subparsers(dest="outputs_command")
    g = commands.add_parser("get", help="write an output's PNG (with its infotext) and print its parameters")
    g.add_argument("output_id", metavar="ID")
    g.add_argument("-o", "--output", type=Path, default=None, help="the file to write (default: ID.png)")
    d = commands.add_parser("delete", help="delete an output (its PNG and parameters)")
    d.add_argument("output_id", metavar="ID")


def outputs_table(outputs: Iterable[inference_pb2.Output]) -> Table:
    table = Table("id", "kind", "created", "size", "seed", "checkpoint", "prompt")
    for o in outputs:
        created = o.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if o.HasField("created_at") else ""
        prompt = o.parameters.prompt
        if len(prompt) > PROMPT_SHOWN:
            prompt = prompt[:PROMPT_SHOWN - 1] + "…"
        # Prompts are whatever a client sent: text, never rich markup.
        table.add_row(o.id, o.kind, created, f"{o.width}×{o.height}", str(o.parameters.seed),
                      escape(o.parameters.checkpoint), escape(prompt))
    return table


def parameter_lines(o: inference_pb2.Output) -> list[str]:
    p = o.parameters
    lines = [
        f"  kind         {o.kind} ({o.width}×{o.height}, {human_size(o.size_bytes)})",
        f"  prompt       {escape(p.prompt)}",
        f"  negative     {escape(p.negative_prompt)}",
        f"  steps        {p.steps}   CFG {p.guidance_scale:g}   seed {p.seed}   scheduler {escape(p.scheduler) or 'default'}",
        f"  checkpoint   {escape(p.checkpoint)}" + (f" ({escape(p.checkpoint_hash)})" if p.checkpoint_hash else ""),
    ]
    for lora in p.loras:
        lines.append(f"  lora         {escape(lora.filename)}:{lora.weight:g}" + (f" ({escape(lora.hash)})"
                                                                                  if lora.hash else ""))
    if o.kind == "upscale":
        lines.append(f"  upscale      ×{p.scale_factor:g}, strength {p.strength:g}, tile {p.tile_size}")
    return lines


async def cmd_outputs(s: Services, args: argparse.Namespace) -> int:
    stub = s.inference_stub
    if args.outputs_command == "get":
        resp = await s.inference.call(stub.GetOutput, inference_pb2.GetOutputRequest(id=args.output_id))
        target: Path = args.output or Path(f"{resp.output.id}.png")
        await asyncio.to_thread(target.write_bytes, resp.png)
        console.print(f"[green]✓[/] {escape(str(target))} ({human_size(len(resp.png))})")
        for line in parameter_lines(resp.output):
            console.print(line)
        return 0
    if args.outputs_command == "delete":
        await s.inference.call(stub.DeleteOutput, inference_pb2.DeleteOutputRequest(id=args.output_id))
        console.print(f"deleted output {escape(args.output_id)}")
        return 0
    request = inference_pb2.ListOutputsRequest(page_size=min(args.limit or LIST_PAGE_SIZE, LIST_PAGE_SIZE))
    shown: list[inference_pb2.Output] = []
    pages = paged(lambda page: s.inference.call(stub.ListOutputs, page), request, "outputs")
    async with contextlib.aclosing(pages):
        async for output in pages:
            shown.append(output)
            if args.limit and len(shown) >= args.limit:
                break
    console.print(outputs_table(shown))
    console.print(f"{len(shown)} output(s)")
    return 0
