"""CLIP's BPE vocabulary, built exactly as OpenAI's `SimpleTokenizer` builds it.

The hub is not reachable at run time, so the tokenizer files that
`CLIPTokenizer.from_pretrained` reads (vocab.json, merges.txt) ship with the
project. They are generated from `bpe_simple_vocab_16e6.txt.gz`, the merge
list that CLIP (and open_clip, which ships it on PyPI) uses:

    python -m inference_svc.assets.clip_bpe /path/to/bpe_simple_vocab_16e6.txt.gz

writes `sdxl/tokenizer*/{vocab.json,merges.txt}`. The tiny test models reuse
`build_vocab` with the first few merges only, so their tokenizer is a real
CLIP tokenizer with a small vocabulary.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# SimpleTokenizer keeps 49152 - 256 - 2 merges (the vocabulary is 49408 with the specials).
CLIP_MERGE_COUNT = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def read_merges(bpe_gz: Path, count: int = CLIP_MERGE_COUNT) -> list[tuple[str, str]]:
    """The merges of CLIP's `bpe_simple_vocab_16e6.txt.gz` (first line is a header)."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : count + 1]]  # type: ignore[misc]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id: the 256 byte symbols, their `</w>` forms, one token per merge, then BOS and EOS."""
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(merge) for merge in merges)
    vocab.extend([BOS, EOS])
    return {token: i for i, token in enumerate(vocab)}


def tokenizer_files(merges: list[tuple[str, str]], *, pad_token: str) -> dict[str, str]:
    """File name -> text of a CLIPTokenizer folder (what the hub's SDXL repo holds)."""
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    config = {
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
        **special,
    }
    return {
        "vocab.json": json.dumps(build_vocab(merges), ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
        "special_tokens_map.json": json.dumps(special, indent=2),
        "tokenizer_config.json": json.dumps(config, indent=2),
    }


# SDXL's first tokenizer pads with EOS (CLIP ViT-L); the second (OpenCLIP bigG) pads with "!".
PAD_TOKENS = {"tokenizer": EOS, "tokenizer_2": "!"}


def write_tokenizers(root: Path, merges: list[tuple[str, str]]) -> None:
    for folder, pad in PAD_TOKENS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, text in tokenizer_files(merges, pad_token=pad).items():
            (root / folder / name).write_text(text, encoding="utf-8")


def shipped_merges(root: Path) -> list[tuple[str, str]]:
    """The merges of a shipped tokenizer folder (merges.txt without its header)."""
    lines = (root / "tokenizer" / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    return [tuple(line.split()) for line in lines if line]  # type: ignore[misc]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m inference_svc.assets.clip_bpe bpe_simple_vocab_16e6.txt.gz")
    write_tokenizers(Path(__file__).parent / "sdxl", read_merges(Path(sys.argv[1])))
