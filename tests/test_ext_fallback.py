"""Without asd._C the package still works on its readable twins, and says so once (docs/algorithm.md#compiled-hot-path)."""
import subprocess
import sys

CODE = r'''
import sys, importlib.abc

class Block(importlib.abc.MetaPathFinder):          # as if the extension had failed to build
    def find_spec(self, name, path, target=None):
        if name == "asd._C":
            raise ImportError("blocked for this test")
        return None

sys.meta_path.insert(0, Block())
import numpy as np
from asd.core import dp
from asd.tokstats import token_stats, token_stats_ref
import torch

rng = np.random.default_rng(0)
B, S, K = 50, 4, 4
r = rng.random((B, S, K)); cost = rng.random((B, K, K)); cost[:, np.tril(np.ones((K, K), bool))] = np.inf
cur = rng.integers(0, K, B)
a, b = dp.solve(r, cost, cur, 2.0, 0.5), dp.solve_ref(r, cost, cur, 2.0, 0.5)
assert np.array_equal(a.action, b.action) and np.array_equal(a.value, b.value)
a2 = dp.solve(r, cost, cur, 1.0, 0.0)                 # a second call: no second notice
logits = torch.randn(3, 50); chosen = torch.tensor([1, 2, 3])
assert torch.allclose(token_stats(logits, chosen), token_stats_ref(logits, chosen))
from asd._ext import get_ext
assert get_ext() is None
assert "asd._C" not in sys.modules
print("ok")
'''


def test_twins_run_and_the_notice_comes_once():
    p = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"
    assert p.stderr.count("asd._C is not available") == 1, p.stderr
