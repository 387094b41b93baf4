"""What a base install (``pip install companion``: numpy and torch only) can do.

CI also runs this file, with every other test file that needs nothing beyond numpy,
torch and pytest, in a fresh virtual environment holding only the package and those.
"""

from __future__ import annotations

import subprocess
import sys

import torch

from companion.problems import Split
from companion.training import train

CORE = [
    "companion",
    "companion.schedules",
    "companion.theory",
    "companion.optim",
    "companion.river",
    "companion.lr_scheduler",
    "companion.training",
    "companion.problems",
    "companion.formatting",
    "companion.device",
]
EXTRAS = ["matplotlib", "sklearn", "tqdm", "myst_nb", "IPython", "hypothesis"]


def test_the_core_imports_nothing_but_numpy_and_torch():
    # torch itself imports some of these when they are installed: count only ours
    code = (
        "import importlib, sys, numpy, torch\n"
        f"before = {{m for m in {EXTRAS!r} if m in sys.modules}}\n"
        f"for m in {CORE!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in {EXTRAS!r} if m in sys.modules and m not in before))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"a core import pulled in {run.stdout.strip()}"


def test_training_runs_without_tqdm_or_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 5, generator=g), torch.randint(0, 3, (96,), generator=g)
    data = Split(x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    history = train(model, optimizer, data, epochs=3, batch_size=16, progress=True)
    assert history.step_loss.shape == (12,)
    assert history.epoch_train_loss[-1] < history.step_loss[0]
