"""Memory policy of feature building: which allocator Arrow uses, and handing freed
pages back to the system between the steps of a long build."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

import pyarrow as pa

__all__ = ["lean_allocators", "release_arrow_memory", "release_freed_memory"]


def lean_allocators() -> None:
    """Let Arrow allocate with the system allocator in this process.

    Arrow's default allocator (mimalloc) keeps the pages the Parquet reader freed,
    about 0.15x the loaded events of a 1M-customer fact store, mapped where numpy's
    arrays cannot reuse them. Process-wide, so not done by :func:`features.build.build_features`
    itself: ``tagsmith features build`` calls it before loading facts, and so does
    ``benchmarks/features.py``. Measured to cost no time there.
    """
    pa.set_memory_pool(pa.system_memory_pool())


def release_arrow_memory() -> None:
    """Hand pages Arrow freed back to the system: numpy allocates elsewhere, so pages
    kept for Arrow's reuse would only add to the peak of the build that follows."""
    pa.default_memory_pool().release_unused()


def _load_malloc_trim() -> Callable[[int], object] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory() -> None:
    """Hand the memory a cutoff's temporaries used back to the system.

    glibc serves arrays below its mmap threshold (which rises up to 32 MiB after large
    frees) from heaps and returns only a heap's top, so freed temporaries would stay
    resident below arrays still live (~0.15x the events by the last of 12 cutoffs);
    ``malloc_trim`` returns those free pages too (about 10 ms a call).
    """
    release_arrow_memory()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
