"""file_hashes: SHA256, AutoV2 and AutoV3 of real files, in parallel, cancellable, and a cache that makes a
rescan of an unchanged library read no file content."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading

from library_helpers import recorded_opens, write_bytes

from devtools.model_files import kohya_metadata, make_safetensors, write_safetensors
from metadata_svc.file_hashes import (
    FileKey,
    HashCache,
    HashError,
    HashRequest,
    autov2,
    autov3,
    hash_file,
    hash_files,
    header_tensor_sha256,
)


def _a1111_addnet_hash(data: bytes) -> str:
    """A1111's modules/hashes.py addnet_hash_safetensors, on bytes: sha256 of everything after the header."""
    (n,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + n:]).hexdigest()


def _library(tmp_path, count=6, size=3000):
    paths = []
    for i in range(count):
        paths.append(write_safetensors(tmp_path / "lib" / f"m{i}.safetensors", "lora", payload_bytes=size + i, seed=i))
    return paths


def test_sha256_autov2_and_autov3_follow_their_definitions(tmp_path):
    data = make_safetensors("lora", payload_bytes=5000, seed=3)
    path = write_bytes(tmp_path / "x.safetensors", data)
    hashes, key = hash_file(path, tensor_hash=True)
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.tensor_sha256 == _a1111_addnet_hash(data)
    assert hashes.autov2 == hashes.sha256[:10] == autov2(hashes.sha256)
    assert hashes.autov3 == hashes.tensor_sha256[:12] == autov3(hashes.tensor_sha256)
    assert key == FileKey.of(os.stat(path))
    # Small reads: the header's end falls inside a block, and the same hashes come out.
    assert hash_file(path, tensor_hash=True, block_size=5)[0] == hashes
    assert hash_file(path)[0].tensor_sha256 == ""  # not asked for


def test_autov3_ignores_edits_to_the_header_metadata_and_the_header_hash_agrees(tmp_path):
    plain = make_safetensors("lora", payload_bytes=4000, seed=1, metadata=kohya_metadata())
    tensor_sha = _a1111_addnet_hash(plain)
    # What kohya's trainer writes: the tensor-data hash, in the header.
    tagged = make_safetensors("lora", payload_bytes=4000, seed=1,
                              metadata=kohya_metadata(sshs_model_hash=tensor_sha, ss_output_name="renamed"))
    a, _ = hash_file(write_bytes(tmp_path / "a.safetensors", plain), tensor_hash=True)
    b, _ = hash_file(write_bytes(tmp_path / "b.safetensors", tagged), tensor_hash=True)
    assert a.sha256 != b.sha256 and a.tensor_sha256 == b.tensor_sha256 == tensor_sha
    assert header_tensor_sha256({"sshs_model_hash": tensor_sha}) == b.tensor_sha256


def test_files_that_are_not_safetensors_have_no_autov3(tmp_path):
    for name, data in (("short.bin", b"abc"), ("huge.bin", struct.pack("<Q", 1 << 40) + b"{}"), ("empty.bin", b"")):
        hashes, _ = hash_file(write_bytes(tmp_path / name, data), tensor_hash=True)
        assert hashes.sha256 == hashlib.sha256(data).hexdigest() and hashes.tensor_sha256 == "", name


def test_many_files_in_parallel_with_progress(tmp_path):
    paths = _library(tmp_path, count=12, size=20_000)
    seen = []
    results = hash_files([HashRequest(p, tensor_hash=True) for p in paths], workers=4, block_size=4096,
                         progress=lambda done, total: seen.append((done, total)))
    assert [r.request.path for r in results] == paths  # request order
    for path, result in zip(paths, results, strict=True):
        data = path.read_bytes()
        assert not result.cached and result.error == ""
        assert result.hashes.sha256 == hashlib.sha256(data).hexdigest()
        assert result.hashes.tensor_sha256 == _a1111_addnet_hash(data)
    total = sum(p.stat().st_size for p in paths)
    assert seen and all(t == total for _, t in seen)
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == total
    assert len(seen) > len(paths)  # per block, not per file


def test_a_rescan_of_an_unchanged_library_reads_no_file_content(tmp_path):
    paths = _library(tmp_path)
    cache_path = tmp_path / "data" / "hash-cache.json"
    first = hash_files([HashRequest(p, tensor_hash=True) for p in paths], cache=HashCache(cache_path))
    assert not any(r.cached for r in first)
    assert json.loads(cache_path.read_text())["version"] == 1
    assert not [p for p in cache_path.parent.iterdir() if p.name.endswith(".tmp")]  # written atomically

    # A restart: the cache comes from disk. With the keys the scan saw, not even a stat is needed.
    keys = [FileKey.of(os.stat(p)) for p in paths]
    with recorded_opens() as opened:
        again = hash_files([HashRequest(p, key=k, tensor_hash=True) for p, k in zip(paths, keys, strict=True)],
                           cache=HashCache(cache_path))
        plain = hash_files([HashRequest(p) for p in paths], cache=HashCache(cache_path))  # stat only
    assert all(r.cached for r in again + plain)
    assert [r.hashes for r in again] == [r.hashes for r in first]
    assert not opened & {str(p) for p in paths}


def test_a_changed_file_is_hashed_again(tmp_path):
    path = write_bytes(tmp_path / "m.safetensors", make_safetensors("lora", payload_bytes=1000, seed=1))
    cache = HashCache(tmp_path / "cache.json")
    old = hash_files([HashRequest(path)], cache=cache)[0]
    path.write_bytes(make_safetensors("lora", payload_bytes=1000, seed=2))
    os.utime(path, ns=(1, old.key.mtime_ns + 1_000_000))  # a new version, whatever the clock's resolution
    new = hash_files([HashRequest(path)], cache=cache)[0]
    assert not new.cached and new.hashes.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != old.hashes.sha256


def test_a_cached_sha256_without_autov3_is_completed_when_autov3_is_asked_for(tmp_path):
    path = write_bytes(tmp_path / "m.safetensors", make_safetensors("lora", payload_bytes=1000))
    cache = HashCache(tmp_path / "cache.json")
    hash_files([HashRequest(path)], cache=cache)
    full = hash_files([HashRequest(path, tensor_hash=True)], cache=cache)[0]
    assert not full.cached and full.hashes.tensor_sha256
    plain = hash_files([HashRequest(path)], cache=cache)[0]
    assert plain.cached and plain.hashes.tensor_sha256 == full.hashes.tensor_sha256  # kept, not overwritten


def test_cancel_stops_the_run_and_caches_nothing_unfinished(tmp_path):
    paths = _library(tmp_path, count=8, size=50_000)
    cancel = threading.Event()
    cache = HashCache(tmp_path / "cache.json")
    results = hash_files([HashRequest(p) for p in paths], cache=cache, workers=2, block_size=1024, cancel=cancel,
                         progress=lambda done, total: cancel.set())
    errors = [r.error for r in results]
    assert errors.count(HashError.CANCELLED) >= len(paths) - 2 and set(errors) <= {HashError.CANCELLED, ""}
    assert len(cache) == sum(1 for r in results if r.hashes is not None)


def test_a_file_written_while_it_is_hashed_is_changed_not_cached(tmp_path):
    path = write_bytes(tmp_path / "m.safetensors", make_safetensors("lora", payload_bytes=20_000))
    cache = HashCache(tmp_path / "cache.json")

    def append_once(done, total):
        if done <= 1024:
            with path.open("ab") as out:
                out.write(b"more")

    result = hash_files([HashRequest(path)], cache=cache, workers=1, block_size=1024, progress=append_once)[0]
    assert result.error == HashError.CHANGED and result.hashes is None and len(cache) == 0


def test_vanished_and_odd_files_are_errors_on_that_file_only(tmp_path):
    good = write_bytes(tmp_path / "good.safetensors", make_safetensors("lora", payload_bytes=100))
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    (tmp_path / "dir.safetensors").mkdir()
    gone = tmp_path / "gone.safetensors"
    stale = write_bytes(tmp_path / "stale.safetensors", b"x" * 10)
    stale_key = FileKey.of(os.stat(stale))
    stale.unlink()
    results = hash_files([HashRequest(good), HashRequest(fifo), HashRequest(tmp_path / "dir.safetensors"),
                          HashRequest(gone), HashRequest(stale, key=stale_key)])
    assert [r.error for r in results] == ["", HashError.NOT_A_REGULAR_FILE, HashError.NOT_A_REGULAR_FILE,
                                          HashError.VANISHED, HashError.VANISHED]


def test_a_corrupt_cache_file_is_an_empty_cache(tmp_path):
    path = tmp_path / "cache.json"
    for junk in (b"{not json", b"[1, 2]", json.dumps({"version": 99, "entries": {}}).encode(), b"[" * 100_000):
        path.write_bytes(junk)
        assert len(HashCache(path)) == 0
    path.write_text(json.dumps({"version": 1, "entries": {
        "1:2:3:4": {"sha256": "a" * 64, "tensor_sha256": ""},
        "5:6:7:8": {"sha256": "../../etc/passwd"},
        "9:9:9:9": "nope",
    }}))
    cache = HashCache(path)
    assert len(cache) == 1 and cache.get(FileKey(1, 2, 3, 4)).sha256 == "a" * 64


def test_retain_forgets_files_no_longer_seen(tmp_path):
    paths = _library(tmp_path, count=3)
    cache = HashCache(tmp_path / "cache.json")
    results = hash_files([HashRequest(p) for p in paths], cache=cache)
    assert cache.retain([results[0].key]) == 2
    cache.save()
    reloaded = HashCache(tmp_path / "cache.json")
    assert len(reloaded) == 1 and reloaded.get(results[0].key) == results[0].hashes


def test_header_hashes_are_normalised_and_otherwise_ignored():
    sha = "0123456789abcdef" * 4
    assert header_tensor_sha256({"modelspec.hash_sha256": "0x" + sha.upper()}) == sha
    assert header_tensor_sha256({"sshs_model_hash": sha, "modelspec.hash_sha256": "f" * 64}) == sha
    assert header_tensor_sha256({"sshs_model_hash": "12345678"}) == ""  # the legacy 8-hex hash is not it
    assert header_tensor_sha256({"sshs_model_hash": ["x"]}) == ""
