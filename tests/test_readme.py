"""The README's example is real code: it runs, and its scheduler does what the text says."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_training_example_runs_and_follows_the_schedule():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "ScheduledLR" in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    optimizer, schedule = namespace["optimizer"], namespace["scheduler"].schedule
    # after 1000 steps the scheduler has set the lr of step 1000 (the cosine's end: final_lr = 0)
    assert optimizer.param_groups[0]["lr"] == schedule(1000) == 0.0
    assert schedule(0) == 1e-3 / 50  # warmup starts at peak/W, never 0
