"""CivitaiModelInfo.stats from CivitAI's `stats` objects: the model's counts, else the version's; junk is 0."""

from __future__ import annotations

import json
from pathlib import Path

from civitai_svc.metadata import build_info, stats_info

FIXTURES = Path(__file__).parent / "fixtures"


def test_model_counts_win_over_the_version_s() -> None:
    checkpoint = json.loads((FIXTURES / "model_checkpoint.json").read_text())
    stats = build_info(checkpoint, None).stats
    assert (stats.download_count, stats.thumbs_up_count, stats.thumbs_down_count, stats.comment_count) == (
        183402, 9120, 31, 402)


def test_a_version_alone_gives_its_own_counts() -> None:
    version = json.loads((FIXTURES / "model_version_lora.json").read_text())
    stats = build_info(None, version).stats
    assert (stats.download_count, stats.thumbs_up_count) == (4821, 612)


def test_junk_counts_are_zero() -> None:
    stats = stats_info({"downloadCount": "12", "thumbsUpCount": True, "favoriteCount": -3, "commentCount": 1e30,
                        "rating": float("nan"), "ratingCount": None})
    assert (stats.download_count, stats.thumbs_up_count, stats.favorite_count, stats.rating,
            stats.rating_count) == (0, 0, 0, 0.0, 0)
    assert stats.comment_count == 2**63 - 1
    assert stats_info({"rating": 4.5, "ratingCount": 10}).rating == 4.5
    assert stats_info({"rating": 9}).rating == 0.0
    assert stats_info(None) == stats_info([])
