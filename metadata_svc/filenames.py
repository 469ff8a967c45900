"""Filename rules: a model's filename is its key and a path component on the volume, so it must be a plain name."""

from __future__ import annotations

import unicodedata

from metadata_svc.errors import InvalidFilename, PickleNotAllowed, UnsupportedExtension

SAFETENSORS_EXTENSIONS = (".safetensors",)
# Loading these runs pickle, i.e. arbitrary code from the file; refused unless configured.
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")
MAX_FILENAME_BYTES = 255


def validate_filename(filename: str) -> str:
    """The filename unchanged, or InvalidFilename saying what is wrong with it."""
    meta = {"filename": filename}
    if not filename:
        raise InvalidFilename("filename is empty", metadata=meta)
    if len(filename.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        raise InvalidFilename(f"filename is longer than {MAX_FILENAME_BYTES} bytes", metadata=meta)
    if "/" in filename or "\\" in filename:
        raise InvalidFilename(f"filename {filename!r} contains a path separator", metadata=meta)
    if filename in (".", "..") or ".." in filename:
        raise InvalidFilename(f"filename {filename!r} contains '..'", metadata=meta)
    if filename.startswith("."):
        raise InvalidFilename(f"filename {filename!r} starts with a dot", metadata=meta)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in filename):
        raise InvalidFilename(f"filename {filename!r} contains control characters", metadata=meta)
    if filename != filename.strip():
        raise InvalidFilename(f"filename {filename!r} starts or ends with whitespace", metadata=meta)
    return filename


def is_pickle(filename: str) -> bool:
    return filename.lower().endswith(PICKLE_EXTENSIONS)


def check_extension(filename: str, *, allow_pickle: bool) -> str:
    """Returns the format ("safetensors" or "pickle"), or raises for an unusable extension."""
    lowered = filename.lower()
    if lowered.endswith(SAFETENSORS_EXTENSIONS):
        return "safetensors"
    if lowered.endswith(PICKLE_EXTENSIONS):
        if not allow_pickle:
            raise PickleNotAllowed(
                f"{filename!r} is a pickle-format file; loading it can run arbitrary code. "
                "Use a .safetensors file, or start the registry with --allow-pickle.",
                metadata={"filename": filename},
            )
        return "pickle"
    allowed = ", ".join(SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS) if allow_pickle else ", ".join(SAFETENSORS_EXTENSIONS)
    raise UnsupportedExtension(
        f"{filename!r} has an unsupported extension; expected {allowed}",
        metadata={"filename": filename, "allowed": allowed},
    )


def looks_like_model_file(filename: str) -> bool:
    """For scans: a model file by extension, not a dotfile or a partial download."""
    lowered = filename.lower()
    return not filename.startswith(".") and lowered.endswith(SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS)
