"""One call's numeric features in one 2-D block per dtype (the live path's output).

:func:`features.cutoffs.cutoff_columns` writes each numeric feature into a row of the
block of its catalogue dtype instead of allocating (and converting into) one array per
feature: at a few customers a feature's own allocation, dtype decision and copy cost
more than its values. Each feature is then a contiguous row view of its block, so the
per-feature API is unchanged, while a model's input matrix takes all features of a
dtype with one fancy index (:func:`block_matrix_plan`, used by
``scoring.contract.columns_matrix``) instead of stacking ~100 arrays.

What is written, and the conversion, are :func:`features.cutoffs._fill`'s: a safe cast
or a float rounding is a plain assignment; anything else goes through the checked
conversion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BlockLayout",
    "BlockMatrixPlan",
    "ColumnBlocks",
    "block_layout",
    "block_matrix_plan",
    "fill_matrix",
    "plain_assignment",
]


@dataclass(frozen=True)
class BlockLayout:
    """Where each numeric feature goes: its dtype's block and its row there.

    Attributes:
        slots: Feature name -> (dtype, row in that dtype's block).
        names: Dtype -> the names of its block's rows, in row order.
    """

    slots: Mapping[str, tuple[np.dtype, int]]
    names: Mapping[np.dtype, tuple[str, ...]]


_LAYOUTS: dict[int, tuple[Mapping[str, Any], BlockLayout]] = {}


def block_layout(dtypes: Mapping[str, Any]) -> BlockLayout:
    """The layout of ``dtypes`` (feature name -> numpy dtype, or a dtype name for the
    features kept outside the blocks), computed once per mapping object."""
    found = _LAYOUTS.get(id(dtypes))
    if found is None or found[0] is not dtypes:
        names: dict[np.dtype, list[str]] = {}
        for name, dtype in dtypes.items():
            if isinstance(dtype, np.dtype):
                names.setdefault(dtype, []).append(name)
        slots = {name: (dt, k) for dt, group in names.items() for k, name in enumerate(group)}
        if len(_LAYOUTS) >= 64:
            _LAYOUTS.clear()
        found = (dtypes, BlockLayout(slots, {dt: tuple(g) for dt, g in names.items()}))
        _LAYOUTS[id(dtypes)] = found
    return found[1]


class ColumnBlocks:
    """The blocks of one call: ``blocks[dtype]`` is a (features, rows) C-ordered array.

    Args:
        layout: The catalogue's :class:`BlockLayout`.
        n: Rows (customers).
    """

    def __init__(self, layout: BlockLayout, n: int) -> None:
        self.layout = layout
        self.n = n
        self.blocks = {
            dt: np.empty((len(group), n), dtype=dt) for dt, group in layout.names.items()
        }

    def rows(self) -> dict[str, np.ndarray]:
        """Feature name -> its row (a view), for every block feature: one pass over
        each block instead of two lookups and an index per feature."""
        out: dict[str, np.ndarray] = {}
        for dt, group in self.layout.names.items():
            out.update(zip(group, self.blocks[dt], strict=True))
        return out

    def row(self, name: str) -> np.ndarray | None:
        """The row (a view) feature ``name`` is written to; ``None``: not a block feature."""
        slot = self.layout.slots.get(name)
        return None if slot is None else self.blocks[slot[0]][slot[1]]


_PLAIN: dict[tuple[np.dtype, np.dtype], bool] = {}


def plain_assignment(src: np.dtype, dst: np.dtype) -> bool:
    """Whether ``src`` values go into a ``dst`` array by plain assignment (a safe cast,
    or a float rounded to the catalogue's float), decided once per pair of dtypes."""
    found = _PLAIN.get((src, dst))
    if found is None:
        found = bool(np.can_cast(src, dst, casting="safe") or (src.kind == "f" and dst.kind == "f"))
        _PLAIN[(src, dst)] = found
    return found


@dataclass(frozen=True)
class BlockMatrixPlan:
    """How one model's numeric inputs are read from the blocks.

    Attributes:
        parts: Per dtype: (the rows of its block, the matrix columns they go to).
    """

    parts: Sequence[tuple[np.dtype, np.ndarray, np.ndarray]]


_MATRIX_PLANS: dict[tuple[int, tuple[str, ...]], tuple[BlockLayout, BlockMatrixPlan | None]] = {}


def block_matrix_plan(
    layout: BlockLayout, names: Sequence[str], positions: np.ndarray
) -> BlockMatrixPlan | None:
    """The plan reading ``names`` (matrix columns ``positions``) from blocks of
    ``layout``; ``None`` when one of them is not a block feature. Kept per layout and
    names (both fixed for a scorer's catalogue and model)."""
    key = (id(layout), tuple(names))
    found = _MATRIX_PLANS.get(key)
    if found is None or found[0] is not layout:
        plan: BlockMatrixPlan | None = None
        if all(name in layout.slots for name in names):
            by_dtype: dict[np.dtype, tuple[list[int], list[int]]] = {}
            for name, column in zip(names, positions.tolist(), strict=True):
                dt, row = layout.slots[name]
                rows, columns = by_dtype.setdefault(dt, ([], []))
                rows.append(row)
                columns.append(column)
            plan = BlockMatrixPlan(
                [
                    (dt, np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))
                    for dt, (rows, cols) in by_dtype.items()
                ]
            )
        if len(_MATRIX_PLANS) >= 256:
            _MATRIX_PLANS.clear()
        found = (layout, plan)
        _MATRIX_PLANS[key] = found
    return found[1]


def fill_matrix(out: np.ndarray, blocks: ColumnBlocks, plan: BlockMatrixPlan) -> None:
    """Write the plan's inputs into ``out`` (rows x matrix columns, float64): one fancy
    index and one assignment per dtype. Each value becomes the float64 that stacking
    the columns and assigning would give (float32, ints and bools convert to float64
    directly or through a wider type that holds them exactly)."""
    for dt, rows, columns in plan.parts:
        out[:, columns] = blocks.blocks[dt][rows].T
