"""The audience builder: live counts and samples, saving, CSV export.

Counts read the in-memory :class:`console.data.Population` of a snapshot, the same
columns ``tags.segments.select_audience`` builds from the store, evaluated by the same
compiled rule, so the console and ``tagsmith audience select`` always agree (a test
holds them to it); a million customers take milliseconds instead of a DuckDB pivot.
Every count, save and export checks the viewer's role first and is audited.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from console.access import Viewer
from console.data import Population, StoreView, records
from tags.errors import AudienceError, TagsError
from tags.policy import tag_infos
from tags.segments import SCORE_SUFFIX, AudienceBook, SavedAudience, compile_audience
from tags.store import to_as_of

__all__ = ["AudienceDesk", "AudiencePreview", "columns_for"]

_EXPORT_CHUNK = 50_000


@dataclass(frozen=True)
class AudiencePreview:
    """A counted audience.

    Attributes:
        expression: The expression.
        tags: Tags it reads.
        columns: Columns of the sample (``customer_id`` first).
        count: Customers selected.
        universe: Customers in the snapshot.
        as_of: The snapshot's as-of date.
        sample: The first selected customers (by id), with the columns read.
        seconds: Time the count took.
    """

    expression: str
    tags: list[str]
    columns: list[str]
    count: int
    universe: int
    as_of: pd.Timestamp
    sample: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def share(self) -> float:
        """Selected customers over the snapshot's customers."""
        return self.count / self.universe if self.universe else 0.0


def columns_for(catalogue: Any, visible: frozenset[str]) -> list[tuple[str, str]]:
    """(column, kind) an expression may read, for the visible tags (a help table)."""
    out = []
    for tag in tag_infos(catalogue):
        if tag.id not in visible:
            continue
        value_type = getattr(tag, "value_type", "")
        out.append((tag.id, "true/false" if value_type == "boolean" else "text"))
        if value_type == "score" or getattr(tag, "source", "") == "model":
            out.append((tag.id + SCORE_SUFFIX, "number"))
    return out


class AudienceDesk:
    """Counts, saves and exports audiences for viewers.

    Args:
        view: Cached snapshots of the tag store.
        book: Saved audiences.
        catalogue: The tag catalogue.
        sample_rows: Customers shown in a preview.
    """

    def __init__(
        self, view: StoreView, book: AudienceBook, catalogue: Any, *, sample_rows: int
    ) -> None:
        self.view = view
        self.book = book
        self.catalogue = catalogue
        self.sample_rows = sample_rows

    def _select(
        self, viewer: Viewer, expression: str, as_of: Any, action: str
    ) -> tuple[list[str], list[str], Population, np.ndarray]:
        rule, tags = compile_audience(expression, self.catalogue)
        query = {"expression": expression, "as_of": str(as_of or "latest")}
        viewer.authorise("audience", tags, query=query)
        if action != "audience":
            viewer.authorise(action, tags, query=query)
        population = self.view.population(None if as_of in (None, "") else to_as_of(as_of))
        if population is None:
            loaded = ", ".join(f"{d:%Y-%m-%d}" for d in self.view.current().loaded_dates)
            raise AudienceError(
                "Expected a tag snapshot to select from "
                f"({loaded or 'none yet: run tagsmith tags run'}). Got none on or before "
                f"{as_of or 'now'}."
            )
        names = sorted(rule.name_set)
        frame = population.frame
        mask = np.asarray(rule.mask(frame[names]), dtype=bool)
        return tags, ["customer_id", *names], population, mask

    def preview(self, viewer: Viewer, expression: str, *, as_of: Any = None) -> AudiencePreview:
        """Count and sample an expression (audited as an audience read).

        Raises:
            AudienceError: Empty expression, or no snapshot yet.
            RuleError: The expression is invalid (the message has the caret).
            AccessDenied: It reads a tag the viewer's role may not see.
        """
        began = time.perf_counter()
        tags, columns, population, mask = self._select(viewer, expression, as_of, "audience")
        count = int(mask.sum())
        rows = np.flatnonzero(mask)[: self.sample_rows]
        sample = records(population.frame.iloc[rows][columns])
        viewer.record(
            "audience",
            tags=tags,
            n_customers=count,
            query={"expression": expression},
            extra={"as_of": f"{population.as_of:%Y-%m-%d}", "universe": population.size},
        )
        return AudiencePreview(
            expression=expression,
            tags=tags,
            columns=columns,
            count=count,
            universe=population.size,
            as_of=population.as_of,
            sample=sample,
            seconds=time.perf_counter() - began,
        )

    def export_csv(
        self, viewer: Viewer, expression: str, *, as_of: Any = None
    ) -> tuple[Iterator[str], int]:
        """CSV lines of the selected customers with the columns read, and their count.

        Needs the ``export`` action besides ``audience``; audited as an export.
        """
        tags, columns, population, mask = self._select(viewer, expression, as_of, "export")
        chosen = population.frame.loc[mask, columns]
        viewer.record(
            "export",
            tags=tags,
            n_customers=len(chosen),
            query={"expression": expression},
            extra={"as_of": f"{population.as_of:%Y-%m-%d}", "format": "csv"},
        )

        def lines() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(columns)
            yield buffer.getvalue()
            for start in range(0, len(chosen), _EXPORT_CHUNK):
                part = chosen.iloc[start : start + _EXPORT_CHUNK]
                yield part.to_csv(index=False, header=False, lineterminator="\n")

        return lines(), len(chosen)

    def save(self, viewer: Viewer, name: str, expression: str, description: str) -> SavedAudience:
        """Save an expression by name (the viewer must be allowed to select it)."""
        _, tags = compile_audience(expression, self.catalogue)
        viewer.authorise("audience", tags, query={"save": name, "expression": expression})
        saved = self.book.save(
            name, expression, self.catalogue, description=description, actor=viewer.name
        )
        viewer.record("audience.save", tags=tags, query={"name": name, "expression": expression})
        return saved

    def delete(self, viewer: Viewer, name: str) -> None:
        """Delete a saved audience the viewer could select."""
        saved = self.book.get(name)
        _, tags = compile_audience(saved.expression, self.catalogue)
        viewer.authorise("audience", tags, query={"delete": name})
        self.book.delete(name)
        viewer.record("audience.delete", tags=tags, query={"name": name})

    def saved(self, viewer: Viewer) -> list[tuple[str, SavedAudience]]:
        """Saved audiences whose tags the viewer may read (others are not listed)."""
        out = []
        for name, saved in self.book.list().items():
            try:
                _, tags = compile_audience(saved.expression, self.catalogue)
            except TagsError:  # a saved expression the catalogue no longer fits
                continue
            if set(tags) <= viewer.visible:
                out.append((name, saved))
        return out
