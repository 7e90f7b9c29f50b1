"""HTML coverage report: tag sizes over time and transitions between values.

:func:`render_report` is pure (frames in, HTML text out); charts are matplotlib PNGs
embedded as base64, so the report is one self-contained file that opens offline.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import jinja2
import pandas as pd

__all__ = ["flag_messages", "render_report"]

_TEMPLATE = "report.html.j2"


def flag_messages(coverage: pd.DataFrame) -> list[dict[str, str]]:
    """One human sentence per flagged tag value (coverage_zero once per tag)."""
    out: list[dict[str, str]] = []
    zero_done: set[str] = set()
    for r in coverage.to_dict("records"):
        tag_id = str(r["tag_id"])
        if r["flag"] == "coverage_zero" and tag_id not in zero_done:
            zero_done.add(tag_id)
            out.append({"tag_id": tag_id, "value": "", "text": "no customer has this tag"})
        elif r["flag"] == "share_shift":
            out.append(
                {
                    "tag_id": tag_id,
                    "value": str(r["value"]),
                    "text": f"share moved {100 * r['share_change']:+.1f} points "
                    f"({100 * r['prev_share']:.1f}% -> {100 * r['share']:.1f}%)",
                }
            )
    return out


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _sizes_chart(sizes: pd.DataFrame, tag_id: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = sizes[sizes["tag_id"] == tag_id].pivot_table(
        index="as_of", columns="value", values="count", aggfunc="sum", fill_value=0
    )
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    if len(data) <= 1:
        ax.bar([str(c) for c in data.columns], data.iloc[0] if len(data) else [])
        ax.tick_params(axis="x", rotation=30)
    else:
        for col in data.columns:
            ax.plot(data.index, data[col], marker="o", label=str(col))
        ax.legend(fontsize=7, loc="best")
        fig.autofmt_xdate()
    ax.set_ylabel("customers")
    ax.grid(alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _matrix_chart(matrix: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = matrix.pivot_table(
        index="from_value", columns="to_value", values="count", aggfunc="sum", fill_value=0
    )
    fig, ax = plt.subplots(figsize=(0.9 * len(grid.columns) + 2.4, 0.5 * len(grid.index) + 1.6))
    ax.imshow(grid.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], rotation=30, ha="right")
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    ax.set_xlabel("to")
    ax.set_ylabel("from")
    peak = grid.to_numpy().max() or 1
    for i in range(len(grid.index)):
        for j in range(len(grid.columns)):
            v = int(grid.to_numpy()[i, j])
            ax.text(
                j,
                i,
                f"{v:,}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > peak / 2 else "black",
            )
    out = _png(fig)
    plt.close(fig)
    return out


def _fmt_share(v: Any) -> str:
    return "" if pd.isna(v) else f"{100 * float(v):.1f}%"


def render_report(
    coverage: pd.DataFrame,
    sizes: pd.DataFrame,
    transitions: Mapping[str, pd.DataFrame],
    *,
    title: str,
    meta: Mapping[str, Any],
    threshold: float,
    lint: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The report as one HTML page.

    Args:
        coverage: :meth:`tags.store.TagStore.coverage` of the reported snapshot.
        sizes: :meth:`tags.store.TagStore.sizes_over_time`.
        transitions: Tag id -> :meth:`tags.store.TagStore.transition_matrix` between
            the previous and the reported snapshot (empty mapping when there is none).
        title: Page title.
        meta: ``as_of``, ``previous``, ``n_customers``, ``run_id``, ``role`` and
            ``generated`` (when the report was made; passed in to keep this pure).
        threshold: The share-shift threshold (for the "no flags" sentence).
        lint: ``tags.lint`` findings (``Finding.as_dict``): redundant and dead tags.
    """
    rows = [
        {
            "tag_id": r["tag_id"],
            "value": "" if pd.isna(r["value"]) else r["value"],
            "count": f"{int(r['count']):,}",
            "share": _fmt_share(r["share"]),
            "prev_share": _fmt_share(r["prev_share"]),
            "change": "" if pd.isna(r["share_change"]) else f"{100 * r['share_change']:+.1f}",
            "flag": r["flag"],
        }
        for r in coverage.to_dict("records")
    ]
    tag_ids = sorted({str(t) for t in coverage["tag_id"]} & {str(t) for t in sizes["tag_id"]})
    tags = [
        {
            "tag_id": t,
            "sizes_png": _sizes_chart(sizes, t),
            "matrix_png": _matrix_chart(transitions[t]) if t in transitions else "",
        }
        for t in tag_ids
    ]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(
        resources.files("tags").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    )
    return template.render(
        title=title,
        rows=rows,
        tags=tags,
        flags=flag_messages(coverage),
        threshold_pct=f"{100 * threshold:g}",
        lint=list(lint),
        **meta,
    )
