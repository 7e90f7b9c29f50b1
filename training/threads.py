"""One BLAS thread around the BTYD likelihoods.

The Pareto/NBD, BG/NBD and Gamma-Gamma fits take dot products of vectors as long as
their sample (30k-200k customers) at every optimiser step. OpenBLAS splits a dot
product over threads above 10,000 elements, and on a busy machine (or beside the
LightGBM and SHAP threads training runs) those threads wait on each other: a
Pareto/NBD step on 30k rows measured 95 ms of CPU with the default two threads and
13 ms with one (same values), a 1.8 s fit 0.25 s.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["one_blas_thread"]


def one_blas_thread() -> threadpool_limits:
    """A context in which BLAS calls (numpy's ``@`` among them) use one thread."""
    return threadpool_limits(limits=1, user_api="blas")
