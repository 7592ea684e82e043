"""The pure core imports no heavy dependency and does no I/O."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import asd.core

HEAVY = {"torch", "h5py", "submitit", "vllm", "transformers"}
PURE_MODULES = ["asd.core"] + [f"asd.core.{m.name}" for m in pkgutil.iter_modules(asd.core.__path__)]


@pytest.mark.parametrize("mod", PURE_MODULES)
def test_pure_imports(mod):
    code = f"import sys, {mod}; bad = {HEAVY!r} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_has_no_file_io():
    core = Path(asd.core.__file__).parent
    for f in core.glob("*.py"):
        text = f.read_text()
        for needle in ("open(", "Path(", "np.save", "np.load", "json.dump(", "json.load("):
            assert needle not in text, f"{f.name} does I/O ({needle}); move it to an adapter"


def test_cheap_top_level_imports():
    code = "import sys, asd, asd.cli, asd.models, asd.run_config; bad = {'torch','h5py','submitit','vllm','transformers'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
