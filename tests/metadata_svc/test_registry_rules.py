"""Properties of the input rules: filenames never escape their folder; header parsing never crashes."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.model_files import frame_header
from metadata_svc.errors import InvalidFilename, InvalidSafetensors
from metadata_svc.filenames import validate_filename
from metadata_svc.inspection import classify, read_header


@given(st.text(min_size=1, max_size=300))
def test_a_valid_filename_is_one_plain_name_inside_its_folder(name):
    folder = Path("/volume/loras")
    try:
        validate_filename(name)
    except InvalidFilename:
        return
    path = folder / name
    assert path.parent == folder and path.name == name
    assert not name.startswith(".") and ".." not in name and "/" not in name
    assert len(name.encode("utf-8", "surrogatepass")) <= 255


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 1 << 40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.dictionaries(st.text(max_size=40), json_values, max_size=5), tail=st.binary(max_size=64))
def test_any_header_parses_or_is_invalid_safetensors(tmp_path, header, tail):
    raw = json.dumps(header).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(frame_header(raw, tail))
    try:
        found = classify(read_header(path))
    except InvalidSafetensors:
        return
    assert found.detected_type in ("lora", "checkpoint", "unknown")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes_never_crash_the_reader(tmp_path, data):
    path = tmp_path / "y.safetensors"
    path.write_bytes(data)
    try:
        read_header(path)
    except InvalidSafetensors:
        pass
