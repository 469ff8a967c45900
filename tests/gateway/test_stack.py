"""`make run` (python -m devtools.stack, not --demo) as a real process, and how its runner stops children.

Ctrl-C must stop all four children cleanly: each exits 0 after the runner's SIGTERM. A child that has
to be killed, or exits non-zero, is reported and makes the runner exit non-zero.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from gw_helpers import CountingListener, dead_address, proxy_env, stack_stop_problems

from devtools.stack import Stack, StackConfig

REPO = Path(__file__).resolve().parents[2]
CHILDREN = ("gateway", "inference", "civitai", "registry")


def test_make_run_starts_on_an_empty_data_dir_and_ctrl_c_stops_all_four_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"  # does not exist yet: the runner makes the volumes
    # Every proxy variable points at a local listener: a connection it sees is one that tried to leave.
    outbound = CountingListener()
    env = {**os.environ, "MODELMGR_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO),
           # never the real CivitAI from a test (nothing here calls it at start-up anyway)
           "CIVITAI_BASE_URL": f"http://{dead_address()}",
           **proxy_env(f"http://127.0.0.1:{outbound.port}")}
    proc = subprocess.Popen([sys.executable, "-m", "devtools.stack", "--free-ports", "--data-dir", str(data)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for _ in range(3000):  # a guard against hanging, not a timing assertion
            if any("Ctrl-C stops everything" in line for line in lines) or proc.poll() is not None:
                break
            time.sleep(0.1)
        out = "\n".join(lines)
        assert "Model Manager is up" in out and "demo" not in out, out
        url = re.search(r"Web UI:\s+(http://\S+?)/?$", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
        # Up: the gateway answers and sees the three services healthy.
        assert httpx.get(f"{url}/", timeout=30, trust_env=False).status_code == 200  # the UI, too
        health = httpx.get(f"{url}/api/v1/health", timeout=30, trust_env=False).json()["services"]
        assert health == {"registry": "SERVING", "civitai": "SERVING", "inference": "SERVING"}, health
        assert "Note: no base checkpoint" in out  # an empty data dir: it says what is missing
        assert (data / "user-models").is_dir() and (data / "models").is_dir()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = proc.wait()
        reader.join()
        outbound.close()
    assert outbound.seen == []  # make run started and served with no outbound connection attempt
    out = "\n".join(lines)
    problems = stack_stop_problems(lines)
    stopped = [line.split()[0] for line in lines if line.endswith("stopped (exit code 0)")]
    assert problems == [], out
    assert code == 0, out
    # Each child exited 0, gateway first, then the services in reverse start order.
    assert stopped == list(CHILDREN), out
    assert "all stopped." in out, out


CHILD = """
import signal, sys, time
mode = sys.argv[1]
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0 if mode == "clean" else 3))
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


async def test_stop_reports_a_child_that_had_to_be_killed_or_exited_non_zero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = Stack(StackConfig(data_dir=tmp_path), quiet=True, grace=0.5)
    for name, mode in (("clean", "clean"), ("stubborn", "ignore"), ("failing", "fail")):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, mode,
                                                    stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"ready\n"  # its SIGTERM handler is in place
        stack.procs[name] = proc
    problems = await stack.stop()
    assert problems == ["failing exited with code 3", "stubborn did not stop within 0.5 s of SIGTERM: killed"]
    assert stack.procs["stubborn"].returncode == -signal.SIGKILL
    out, err = capsys.readouterr()
    assert "clean stopped (exit code 0)" in out
    assert "stack: failing exited with code 3" in err and "stack: stubborn did not stop" in err
    # And all clean: nothing reported.
    stack = Stack(StackConfig(data_dir=tmp_path), quiet=True, grace=5)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, "clean", stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and await proc.stdout.readline() == b"ready\n"
    stack.procs["clean"] = proc
    assert await stack.stop() == []
