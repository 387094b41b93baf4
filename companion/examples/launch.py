"""Run :mod:`companion.examples.digits_ddp` on several CPU processes from Python.

:func:`launch` starts ``nproc`` processes with ``python -m torch.distributed.run`` (gloo,
one thread each) and runs the example once per argument list in them, in one process
group, so the processes start (and import torch) once for all the runs; it returns rank
0's figures and the trained parameters of every run. The book's *Training at scale* page
uses it; from a shell, ``torchrun --nproc_per_node 2 -m companion.examples.digits_ddp``
runs one of them.

``python -m companion.examples.launch SPEC`` is the worker side (``SPEC``: the JSON file
:func:`launch` writes); it is not meant to be started by hand.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from companion._validation import check_integer, check_real

__all__ = ["launch"]


def launch(nproc: int, runs: Sequence[Sequence[str]], timeout: float = 300.0) -> list[dict]:
    """Run :func:`companion.examples.digits_ddp.main` on ``nproc`` CPU processes, once per run.

    Parameters
    ----------
    nproc : int
        The number of processes (ranks), >= 1.
    runs : sequence of sequences of str
        One argument list per run, the options of ``digits_ddp`` (e.g.
        ``["--epochs", "5", "--fsdp"]``); ``--device cpu``, ``--json``, ``--save`` and
        ``--quiet`` are added here.
    timeout : float
        Seconds (> 0) before every process is killed and ``RuntimeError`` raised.

    Returns
    -------
    list of dict
        Per run, the figures of ``main`` (``"model"`` left out) and ``"state_dict"``: the
        trained model's parameters on the CPU (FSDP's shards gathered).

    Raises
    ------
    RuntimeError
        When a process fails or the time runs out; the message ends with their output.
    """
    nproc = check_integer("nproc", nproc, low=1)
    timeout = check_real("timeout", timeout, low=0.0, low_open=True)
    if isinstance(runs, str) or not all(
        not isinstance(argv, str) and all(isinstance(a, str) for a in argv) for argv in runs
    ):
        raise TypeError(f"runs must be a sequence of lists of strings, got {runs!r}")
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds companion/
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="digits_ddp-") as tmp:
        spec = Path(tmp) / "runs.json"
        spec.write_text(json.dumps({"runs": [list(argv) for argv in runs], "folder": tmp}))
        command = [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc_per_node", str(nproc), "-m", "companion.examples.launch", str(spec)),
        ]
        output, code = _run(command, tmp, env, timeout)
        if code != 0:
            what = "timed out" if code is None else f"failed (exit {code})"
            raise RuntimeError(f"{' '.join(command[1:])} {what}:\n{output[-4000:]}")
        results = []
        for i in range(len(runs)):
            result = json.loads((Path(tmp) / f"{i}.json").read_text())
            result["state_dict"] = torch.load(Path(tmp) / f"{i}.pt", weights_only=True)
            results.append(result)
    return results


def _run(command: list[str], cwd: str, env: dict[str, str], timeout: float) -> tuple[str, Any]:
    """Run ``command`` in its own session; on timeout kill it and its workers (code None)."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        return output, proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the workers it started
        output, _ = proc.communicate()
        return output, None


def _worker(spec_path: str) -> None:
    """One rank: every run of the spec, in one gloo process group."""
    import torch.distributed as dist

    from companion.examples.digits_ddp import main

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        for i, argv in enumerate(spec["runs"]):
            out = Path(spec["folder"])
            main([*argv, "--device", "cpu", "--quiet"]
                 + ["--json", str(out / f"{i}.json"), "--save", str(out / f"{i}.pt")])  # fmt: skip
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1])
