"""The benchmark's side of benchmarks/_shapiq_runner.py: run a shapiq estimator on a game here.

``shapiq_shapley(python, method, values, m, budget, seed)`` starts the runner under the shapiq
venv's ``python`` and answers its coalition requests with ``values(z) -> (n,)``; it returns
(φ, evaluations served). Needs only numpy and a path to that interpreter (``--shapiq-python``,
or $SHAPIQ_PYTHON); shapiq itself is never imported here.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np

RUNNER = Path(__file__).resolve().parent / "_shapiq_runner.py"


def _read(stream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise RuntimeError("shapiq runner closed its pipe")
        data += chunk
    return data


def shapiq_shapley(python: str, method: str, values, m: int, budget: int, seed: int) -> tuple[np.ndarray, int]:
    proc = subprocess.Popen([python, str(RUNNER), method, str(m), str(budget), str(seed)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    served = 0
    try:
        while True:
            tag = proc.stdout.read(1)
            if not tag:
                raise RuntimeError(f"shapiq {method} failed: {proc.stderr.read().decode()[-2000:]}")
            size = int.from_bytes(_read(proc.stdout, 8), "little")
            array = np.load(io.BytesIO(_read(proc.stdout, size)), allow_pickle=False)
            if tag == b"R":
                return array, served
            v = np.asarray(values(array), dtype=np.float64)
            served += len(array)
            buf = io.BytesIO()
            np.save(buf, v, allow_pickle=False)
            proc.stdin.write(len(buf.getvalue()).to_bytes(8, "little") + buf.getvalue())
            proc.stdin.flush()
    finally:
        proc.kill()
        proc.wait()
