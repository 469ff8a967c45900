"""service_kit.spandrel_loader: spandrel without torchvision, leaving no trace others trip on."""

from __future__ import annotations

import subprocess
import sys


def test_diffusers_imports_after_spandrel_and_sees_no_torchvision() -> None:
    # A fresh interpreter: the order the registry and the inference service import things in. Before, the
    # stand-in stayed in sys.modules and diffusers' find_spec("torchvision") raised "__spec__ is None".
    code = (
        "import importlib.util, sys\n"
        "import service_kit.spandrel_loader as loader\n"
        "import diffusers.utils.import_utils as iu\n"
        "assert loader.ModelLoader is not None\n"
        "if loader.uses_stand_in():\n"
        "    assert importlib.util.find_spec('torchvision') is None\n"
        "    assert not iu.is_torchvision_available()\n"
        "    assert not any(name.startswith('torchvision') for name in sys.modules)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
