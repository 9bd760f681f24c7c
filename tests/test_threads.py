"""The engines' dense solves run on one BLAS thread, and the setting is given back afterwards."""

from __future__ import annotations

import pytest

from explain_cli.engines.threads import one_blas_thread


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {int(info["num_threads"]) for info in threadpool_info() if info["user_api"] == "blas"}


def test_one_blas_thread_limits_numpy_and_scipy_blas_and_restores_them():
    pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401  (its BLAS is loaded)
    import scipy.linalg  # noqa: F401

    before = _blas_threads()
    with one_blas_thread():
        assert _blas_threads() == {1}
    assert _blas_threads() == before


def test_kernelshap_estimate_runs_on_one_blas_thread(monkeypatch):
    pytest.importorskip("threadpoolctl")
    import numpy as np
    import torch

    import explain_cli.engines.kernelshap.engine as engine
    from explain_cli.engines.kernelshap.design import plan

    seen: list[set[int]] = []
    real = engine._estimate

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_estimate", spy)
    design = plan(6, 40, allocation="leverage", exact=False, generator=torch.Generator().manual_seed(0))
    y = design.z.astype(np.float64) @ np.arange(1.0, 7.0)[:, None]  # an additive game: φ_i = i + 1
    fit = engine.estimate(design, y, np.array([21.0]), engine.KernelShapParams(samples=42), torch.Generator().manual_seed(0))
    assert seen == [{1}]
    np.testing.assert_allclose(fit.phi[0], np.arange(1.0, 7.0), atol=1e-8)
