"""How many threads the engines' dense linear algebra (numpy/scipy BLAS) may use.

The estimators solve small dense systems (Kernel SHAP's kriging fit: at most ~1,025 rows per
target) between batches of forward passes. Multi-threaded BLAS gains little at that size on an
idle machine and loses badly when the cores are busy: on 2 shared cores, with the other core
loaded, Kernel SHAP's estimate for one 1,000-sample detector explanation took 1.2-2.5 s of CPU
(3-6 s wall) with OpenBLAS's 2 threads against 0.06 s (0.14 s wall) with one. One thread also
makes the numbers independent of the machine's core count (a threaded BLAS splits reductions
differently, which moves results at float rounding, ~1e-16).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext


def one_blas_thread() -> AbstractContextManager:
    """A context in which numpy's and scipy's BLAS libraries run on one thread (restored on exit).

    Only the BLAS libraries: torch's own thread pool, and so the model's forward passes, are
    untouched. Without ``threadpoolctl`` (a dependency of scikit-learn) it changes nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
