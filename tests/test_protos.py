"""The committed stubs are exactly what protoc makes from protos/ today."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "protos" / "modelmanager" / "v1"


def test_generated_stubs_match_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True)
    fresh = tmp_path / "modelmanager" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.suffix in (".py", ".pyi"))
    committed = sorted(p.name for p in GENERATED.iterdir() if p.suffix in (".py", ".pyi"))
    assert names == committed, "stub files differ: run `make proto`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, GENERATED, names, shallow=False)
    assert not mismatch and not errors, f"stale stubs {mismatch + errors}: run `make proto`"
