"""The `modelmgr` command line as a real process; its runs against the services are in tests/gateway/."""

from __future__ import annotations

import os
import subprocess
import sys


def modelmgr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelmgr", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, check=False)


def test_a_service_that_is_down_prints_as_the_grpc_error_naming_it():
    done = modelmgr("--registry", "127.0.0.1:1", "list")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: UNAVAILABLE / REGISTRY_UNAVAILABLE: the registry service is unavailable" in done.stderr
    assert "tried 127.0.0.1:1" in done.stderr  # the operator's own terminal: say where it looked
    assert "Traceback" not in done.stdout + done.stderr


def test_an_unknown_model_type_is_a_usage_error():
    done = modelmgr("list", "--type", "hypernetwork")
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_import_takes_one_of_copy_or_link():
    done = modelmgr("import", "/library", "--copy", "--link")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


def test_import_of_a_registry_that_is_down_fails_naming_it():
    done = modelmgr("--registry", "127.0.0.1:1", "import", "/library")
    assert done.returncode == 1 and "REGISTRY_UNAVAILABLE" in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
