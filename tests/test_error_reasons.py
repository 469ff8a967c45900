"""Error reasons are checked data: the protos' `CODE / REASON` comments against each service's errors module.

Each service's errors module is the table of its domain's reasons: one ServiceError subclass per reason,
its gRPC code fixed by the class. The proto comments list them as `INVALID_ARGUMENT / MISSING_HEADER,
DUPLICATE_HEADER; RESOURCE_EXHAUSTED / UPLOAD_TOO_LARGE`. Checked both ways, per domain:
every documented reason is a class with that code, every class's reason is documented with its code,
and no service code picks a reason with an inline `reason="..."` literal.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import grpc
import pytest

from service_kit.errors import ServiceError

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos" / "modelmanager" / "v1"

# proto file -> the service package whose errors module raises that domain's reasons.
DOMAINS = {
    "registry.proto": "metadata_svc",
    "civitai.proto": "civitai_svc",
    "inference.proto": "inference_svc",
}

CODES = {code.name for code in grpc.StatusCode}
_WORD = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]")


def comment_text(source: str) -> str:
    """The `//` comments of a proto source, joined into one text, parentheticals removed (they qualify a
    reason or mention other names, e.g. `(hint: set CIVITAI_TOKEN)`)."""
    lines = [m.group(1) for m in re.finditer(r"//(.*)", source)]
    text = " ".join(line.strip() for line in lines)
    while True:
        stripped = re.sub(r"\([^()]*\)", " ", text)
        if stripped == text:
            return text
        text = stripped


def documented_reasons(text: str) -> dict[str, set[str]]:
    """{REASON: {CODE, ...}} from every `CODE / REASON[, REASON...]` list in `text`.

    A list runs from `CODE /` over comma-separated UPPER_SNAKE words; anything else (a lowercase word,
    `;`, `.`) ends it. A CODE followed by `/` starts a new list."""
    found: dict[str, set[str]] = {}
    tokens = re.findall(r"[A-Za-z0-9_]+|/|,|;|\.|\S", text)
    code: str | None = None
    expect_reason = False
    for i, token in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in CODES and nxt == "/":
            code, expect_reason = token, False
        elif token == "/" and code is not None:
            expect_reason = True
        elif token == "," and code is not None:
            expect_reason = True
        elif token == "and" and expect_reason:
            continue
        elif expect_reason and _WORD.fullmatch(token):
            found.setdefault(token, set()).add(code)  # type: ignore[arg-type]
            expect_reason = False
        else:
            code, expect_reason = None, False
    return found


def raised_reasons(package: str) -> dict[str, set[str]]:
    """{REASON: {CODE, ...}} from the ServiceError classes defined in `package`.errors."""
    module = importlib.import_module(f"{package}.errors")
    found: dict[str, set[str]] = {}
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ == module.__name__ and issubclass(cls, ServiceError):
            found.setdefault(cls.default_reason, set()).add(cls.code.name)
    return found


def test_the_parser_reads_the_documented_forms() -> None:
    text = comment_text(
        "// Errors: as CreateModel, plus INVALID_ARGUMENT / MISSING_HEADER,\n"
        "// DUPLICATE_HEADER, SIZE_MISMATCH (more or fewer bytes, CIVITAI_TOKEN), and NOT_COMMITTED;\n"
        "// RESOURCE_EXHAUSTED / UPLOAD_TOO_LARGE. 401 UNAUTHENTICATED / CIVITAI_UNAUTHENTICATED (hint);\n"
        "// ABORTED / MODEL_BUSY while it is deleted, NOT_A_REASON.\n"
    )
    assert documented_reasons(text) == {
        "MISSING_HEADER": {"INVALID_ARGUMENT"},
        "DUPLICATE_HEADER": {"INVALID_ARGUMENT"},
        "SIZE_MISMATCH": {"INVALID_ARGUMENT"},
        "NOT_COMMITTED": {"INVALID_ARGUMENT"},
        "UPLOAD_TOO_LARGE": {"RESOURCE_EXHAUSTED"},
        "CIVITAI_UNAUTHENTICATED": {"UNAUTHENTICATED"},
        "MODEL_BUSY": {"ABORTED"},
    }


@pytest.mark.parametrize(("proto", "package"), sorted(DOMAINS.items()))
def test_documented_and_raised_reasons_agree(proto: str, package: str) -> None:
    documented = documented_reasons(comment_text((PROTOS / proto).read_text(encoding="utf-8")))
    raised = raised_reasons(package)
    assert documented, f"no `CODE / REASON` lists found in {proto}"

    one_code_documented = {r: c for r, c in documented.items() if len(c) > 1}
    assert not one_code_documented, f"{proto} documents a reason under several codes: {one_code_documented}"
    one_code_raised = {r: c for r, c in raised.items() if len(c) > 1}
    assert not one_code_raised, f"{package}.errors has a reason under several codes: {one_code_raised}"

    missing = {r: c for r, c in documented.items() if r not in raised}
    assert not missing, f"{proto} documents reasons that {package}.errors has no class for: {missing}"
    undocumented = {r: c for r, c in raised.items() if r not in documented}
    assert not undocumented, f"{package}.errors has reasons that {proto} does not document: {undocumented}"
    recoded = {r: (documented[r], raised[r]) for r in documented if documented[r] != raised[r]}
    assert not recoded, f"{proto} and {package}.errors disagree on codes (documented, raised): {recoded}"


@pytest.mark.parametrize("package", sorted(DOMAINS.values()))
def test_no_inline_reason_literals(package: str) -> None:
    """A reason is picked by raising its class, never by `reason="..."` at the raise site."""
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.name == "errors.py" or path.name.endswith("_pb2.py") or path.name.endswith("_pb2_grpc.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "reason" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: reason={kw.value.value!r}")
    assert not offenders, "inline reasons; add a class to the service's errors.py instead:\n" + "\n".join(offenders)
