"""Textual-inversion embeddings: an embedding's token in the prompt (or negative prompt) uses its vectors.

An SDXL embedding holds `clip_l` vectors for the first text encoder and `clip_g` for the second. For a job
whose prompts hold a token, both tokenizers are given the token (a copy of each: the pipeline's own
tokenizer is never changed) and both text encoders an extended token table (`ExtendedEmbedding`: the
checkpoint's table plus the embedding rows, no copy of the table) for that job only; afterwards the
pipeline is exactly as before. Why not diffusers' `load_textual_inversion` left in place: in-place
checkpoint switches copy a file's tensors into the modules by shape, and a resized token table would
not take them; and a prompt without any token must run as it always did, bit for bit, which it does
here because nothing is touched at all.

The vectors are read once and kept per checkpoint (on its device, in its dtype), like LoRA adapters.
A multi-vector embedding's token expands to `token token_1 ... token_{n-1}`, as A1111 and diffusers do.
"""

from __future__ import annotations

import copy
import re
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference_svc.checkpoint_cache import CachedCheckpoint
from inference_svc.errors import EmbeddingIncompatible, EmbeddingLoadFailed, shown_path
from service_kit import get_logger

log = get_logger("inference_svc.embeddings")


@dataclass(frozen=True)
class EmbeddingSpec:
    filename: str
    token: str
    path: Path


def _mentions(text: str, token: str) -> bool:
    # A token is a word of its own: "neg" does not use an embedding in "negative".
    return bool(token) and re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def used_in(specs: list[EmbeddingSpec], *texts: str) -> list[EmbeddingSpec]:
    """The embeddings whose token one of `texts` holds (each token once, the first entry wins)."""
    seen: set[str] = set()
    used = []
    for spec in specs:
        if spec.token not in seen and any(_mentions(t, spec.token) for t in texts):
            seen.add(spec.token)
            used.append(spec)
    return used


class ExtendedEmbedding(torch.nn.Module):
    """A token table with rows appended: ids below the base table's size look up the base, the rest `extra`."""

    def __init__(self, base: torch.nn.Embedding, extra: torch.Tensor):
        super().__init__()
        self.base = base
        self.extra = extra
        self.embedding_dim = base.embedding_dim
        self.num_embeddings = base.num_embeddings + extra.shape[0]

    @property
    def weight(self) -> torch.Tensor:  # what transformers reads for the dtype and device
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = self.base.num_embeddings
        inside = ids < n
        out = self.base(torch.where(inside, ids, torch.zeros_like(ids)))
        if bool((~inside).any()):
            rows = self.extra[(ids - n).clamp(min=0)]
            out = torch.where(inside[..., None], out, rows)
        return out


def _read(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(clip_l, clip_g), each (vectors, width), in float32."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EmbeddingLoadFailed(f"embedding {shown_path(path)} could not be read: {type(exc).__name__}: {exc}"[:600],
                                  metadata={"path": shown_path(path)}) from exc
    if not isinstance(state, dict) or not all(isinstance(state.get(k), torch.Tensor) for k in ("clip_l", "clip_g")):
        raise EmbeddingLoadFailed(f"embedding {shown_path(path)} has no clip_l and clip_g tensors (not SDXL)",
                                  metadata={"path": shown_path(path)})
    pair = []
    for key in ("clip_l", "clip_g"):
        tensor = state[key].float()
        if tensor.ndim == 1:
            tensor = tensor[None]
        if tensor.ndim != 2 or tensor.shape[0] < 1 or tensor.shape[0] > 75:
            raise EmbeddingLoadFailed(f"embedding {shown_path(path)}: {key} has shape {list(state[key].shape)}",
                                      metadata={"path": shown_path(path)})
        pair.append(tensor)
    if pair[0].shape[0] != pair[1].shape[0]:
        raise EmbeddingLoadFailed(f"embedding {shown_path(path)}: clip_l and clip_g hold different vector counts",
                                  metadata={"path": shown_path(path)})
    return pair[0], pair[1]


def _text_model(encoder: Any) -> Any:
    """The module holding the token table and eos_token_id: `text_model` before transformers 5 flattened it."""
    return getattr(encoder, "text_model", encoder)


def _table(encoder: Any) -> torch.nn.Embedding:
    return _text_model(encoder).embeddings.token_embedding


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


class EmbeddingCache:
    """Vectors per checkpoint pipeline, read once per file version; at most `max_per_checkpoint` each.

    Keyed by the pipeline object: an in-place switch keeps the modules' widths, so its vectors stay valid;
    a pipeline dropped from the cache takes its vectors with it (weak references).
    """

    def __init__(self, max_per_checkpoint: int = 64):
        self.max_per_checkpoint = max_per_checkpoint
        # id(pipe) -> (weakref to pipe, file key -> (filename, clip_l, clip_g) on its device and dtype).
        self._held: dict[int, tuple[Any, OrderedDict[tuple[str, int, int], tuple[str, torch.Tensor, torch.Tensor]]]] = {}
        self.reads = 0

    def _for(self, pipe: Any, create: bool) -> OrderedDict[Any, Any] | None:
        for key in [k for k, (ref, _) in self._held.items() if ref() is None]:
            del self._held[key]
        found = self._held.get(id(pipe))
        if found is not None and found[0]() is pipe:
            return found[1]
        if not create:
            return None
        held: OrderedDict[Any, Any] = OrderedDict()
        self._held[id(pipe)] = (weakref.ref(pipe), held)
        return held

    def held(self, entry: CachedCheckpoint) -> list[str]:
        held = self._for(entry.pipe, create=False) if entry.pipe is not None else None
        return [name for name, _, _ in list((held or {}).values())]

    def vectors(self, entry: CachedCheckpoint, spec: EmbeddingSpec) -> tuple[torch.Tensor, torch.Tensor]:
        pipe = entry.pipe
        held = self._for(pipe, create=True)
        assert held is not None
        key = _key(spec.path)
        if key in held:
            held.move_to_end(key)
            return held[key][1], held[key][2]
        clip_l, clip_g = _read(spec.path)
        self.reads += 1
        tables = (_table(pipe.text_encoder), _table(pipe.text_encoder_2))
        for name, tensor, table in (("clip_l", clip_l, tables[0]), ("clip_g", clip_g, tables[1])):
            if tensor.shape[1] != table.embedding_dim:
                raise EmbeddingIncompatible(
                    f"embedding {spec.filename}: {name} vectors are {tensor.shape[1]} wide, checkpoint {entry.name}'s "
                    f"text encoder takes {table.embedding_dim}",
                    metadata={"embedding": spec.filename, "checkpoint": entry.name})
        moved = [t.to(device=table.weight.device, dtype=table.weight.dtype)
                 for t, table in zip((clip_l, clip_g), tables, strict=True)]
        held[key] = (spec.filename, moved[0], moved[1])
        while len(held) > self.max_per_checkpoint:
            held.popitem(last=False)
        log.info("embedding.loaded", embedding=spec.filename, checkpoint=entry.name, vectors=clip_l.shape[0])
        return moved[0], moved[1]

    @contextmanager
    def active(self, entry: CachedCheckpoint, specs: list[EmbeddingSpec]) -> Iterator[None]:
        """The pipeline with `specs` usable for the duration of the block, exactly as before afterwards."""
        if not specs:
            yield
            return
        pipe = entry.pipe
        loaded = [(spec, self.vectors(entry, spec)) for spec in specs]
        saved = []
        try:
            for index, (tok_attr, enc_attr) in enumerate((("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))):
                tokenizer, encoder = getattr(pipe, tok_attr), getattr(pipe, enc_attr)
                table = _table(encoder)
                extended = copy.deepcopy(tokenizer)
                names: list[str] = []
                rows: list[torch.Tensor] = []
                for spec, pair in loaded:
                    vectors = pair[index]
                    names += [spec.token] + [f"{spec.token}_{i}" for i in range(1, vectors.shape[0])]
                    rows.append(vectors)
                first = len(extended)
                extended.add_tokens(names)
                if first != table.num_embeddings or len(extended) != first + len(names):
                    raise EmbeddingIncompatible(
                        f"checkpoint {entry.name}'s tokenizer ({first} tokens) and text encoder ({table.num_embeddings}) "
                        "disagree, or a token is already a word of its vocabulary",
                        metadata={"checkpoint": entry.name})
                model = _text_model(encoder)
                saved.append((tok_attr, tokenizer, model, table, model.eos_token_id))
                setattr(pipe, tok_attr, extended)
                model.embeddings.token_embedding = ExtendedEmbedding(table, torch.cat(rows).to(table.weight.device))
                # Configs with the pre-2023 eos_token_id (2) pool at the highest token id, which would be an added
                # token: the pooled output must come from the real end-of-text position.
                model.eos_token_id = extended.eos_token_id
            yield
        finally:
            for tok_attr, tokenizer, model, table, eos in reversed(saved):
                setattr(pipe, tok_attr, tokenizer)
                model.embeddings.token_embedding = table
                model.eos_token_id = eos
