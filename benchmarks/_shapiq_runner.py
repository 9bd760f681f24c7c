"""Run one shapiq estimator on a game served by the parent process (run in shapiq's own venv).

The benchmark's environment and shapiq's need not match (shapiq 1.8 wants Python ≥ 3.12 and
its own numpy/xgboost), so the game crosses a pipe: this process writes each batch of
coalitions shapiq asks for as an .npy array (bool, (n, M)) to stdout, preceded by the tag
b"E", and reads the values (float64, (n,)) back from stdin; at the end it writes b"R" and the
estimate φ (float64, (M,)). Only numpy is needed on the parent's side.

    python _shapiq_runner.py METHOD M BUDGET SEED
"""

from __future__ import annotations

import io
import sys
import warnings

import numpy as np

out, inp = sys.stdout.buffer, sys.stdin.buffer


def send(tag: bytes, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    out.write(tag + len(buf.getvalue()).to_bytes(8, "little") + buf.getvalue())
    out.flush()


def receive() -> np.ndarray:
    size = int.from_bytes(inp.read(8), "little")
    return np.load(io.BytesIO(inp.read(size)), allow_pickle=False)


def game(coalitions: np.ndarray) -> np.ndarray:
    send(b"E", np.asarray(coalitions, dtype=bool))
    return receive()


def approximator(method: str, m: int, seed: int):
    import shapiq

    if method == "OddSHAP":
        return shapiq.OddSHAP(m, random_state=seed)
    if method == "RegressionMSR":
        return shapiq.RegressionMSR(m, "SV", random_state=seed)  # XGBoost proxy, the default
    if method == "LeverageSHAP":
        return shapiq.LeverageSHAP(m, random_state=seed)
    if method == "KernelSHAP":
        return shapiq.KernelSHAP(m, random_state=seed)
    if method == "PolySHAP":
        return shapiq.PolySHAP(m, random_state=seed)
    raise SystemExit(f"unknown method {method}")


def main() -> None:
    method, m, budget, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sys.stdout = sys.stderr  # anything shapiq prints must not corrupt the pipe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = approximator(method, m, seed).approximate(budget, game)
    phi = np.array([values[(i,)] for i in range(m)], dtype=np.float64)
    send(b"R", phi)


if __name__ == "__main__":
    main()
