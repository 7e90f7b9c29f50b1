"""Redundant and dead tags: overlapping memberships, near-duplicate names, empty tags.

A catalogue grows by accretion; the sources ask for it to be combed regularly (merge
similar tags, drop dead ones). :func:`lint_catalogue` finds three kinds of problem:

* ``overlap``: two values of different tags whose members overlap beyond a Jaccard
  threshold in each of the last snapshots (two names for one audience);
* ``similar_name``: two tags of one category whose ids or display names (category
  prefix removed, normalised) are nearly the same string;
* ``empty`` / ``constant``: an active tag that had no row, or the same value for every
  customer, in each of the last ``runs`` snapshots.

Each finding carries a suggested action. The store is read through
:meth:`tags.store.TagStore.reader`; the computation itself is on frames.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from tags.catalogue import Catalogue
from tags.definitions import TagDefinition, normalise_name
from tags.governance import LintConfig
from tags.store import TagStore
from tags.store_format import naive

__all__ = [
    "Finding",
    "LintConfig",
    "jaccard_pairs",
    "lint_catalogue",
    "similar_names",
]

_STATUS_RANK = {"active": 0, "draft": 1, "deprecated": 2}


@dataclass(frozen=True)
class Finding:
    """One lint finding.

    Attributes:
        kind: ``overlap``, ``similar_name``, ``empty`` or ``constant``.
        tags: The tag ids concerned (one or two).
        values: For ``overlap``, the two values compared (``tag=value``).
        score: Jaccard (overlap), name similarity (similar_name) or runs (empty, constant).
        detail: A sentence saying what was found.
        suggestion: What to do about it.
    """

    kind: str
    tags: tuple[str, ...]
    values: tuple[str, ...]
    score: float
    detail: str
    suggestion: str

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {
            "kind": self.kind,
            "tags": list(self.tags),
            "values": list(self.values),
            "score": round(self.score, 4),
            "detail": self.detail,
            "suggestion": self.suggestion,
        }


def jaccard_pairs(members: pd.DataFrame, *, min_members: int = 1) -> pd.DataFrame:
    """Jaccard of every pair of (tag, value) memberships of different tags.

    Args:
        members: ``customer_id``, ``tag_id``, ``value`` (one snapshot).
        min_members: Values with fewer members are left out.

    Returns:
        tag_a, value_a, tag_b, value_b, n_a, n_b, n_both, jaccard; ``tag_a < tag_b``,
        only pairs with at least one shared member.
    """
    cols = ["tag_a", "value_a", "tag_b", "value_b", "n_a", "n_b", "n_both", "jaccard"]
    if members.empty:
        return pd.DataFrame(columns=cols)
    keys = members["tag_id"].astype(str) + "\x1f" + members["value"].astype(str)
    key_codes, key_names = pd.factorize(keys, sort=True)
    cust_codes, cust_names = pd.factorize(members["customer_id"])
    matrix = sparse.csr_matrix(
        (np.ones(len(members), dtype=np.int32), (cust_codes, key_codes)),
        shape=(len(cust_names), len(key_names)),
    )
    matrix.data[:] = 1  # a duplicated row counts once
    sizes = np.asarray(matrix.sum(axis=0)).ravel()
    keep = np.flatnonzero(sizes >= min_members)
    if len(keep) < 2:
        return pd.DataFrame(columns=cols)
    sub = matrix[:, keep]
    both = (sub.T @ sub).tocoo()
    upper = both.row < both.col
    rows, colidx, n_both = both.row[upper], both.col[upper], both.data[upper]
    names = np.asarray(key_names)[keep]
    split = [str(n).split("\x1f", 1) for n in names]
    tag_of = np.array([s[0] for s in split], dtype=object)
    value_of = np.array([s[1] for s in split], dtype=object)
    other_tag = tag_of[rows] != tag_of[colidx]
    rows, colidx, n_both = rows[other_tag], colidx[other_tag], n_both[other_tag]
    n_a, n_b = sizes[keep][rows], sizes[keep][colidx]
    return pd.DataFrame(
        {
            "tag_a": tag_of[rows],
            "value_a": value_of[rows],
            "tag_b": tag_of[colidx],
            "value_b": value_of[colidx],
            "n_a": n_a.astype("int64"),
            "n_b": n_b.astype("int64"),
            "n_both": n_both.astype("int64"),
            "jaccard": n_both / (n_a + n_b - n_both),
        },
        columns=cols,
    )


def _bare_name(tag: TagDefinition, prefixes: Sequence[str]) -> str:
    norm = normalise_name(tag.display_name)
    for prefix in sorted(prefixes, key=len, reverse=True):
        p = normalise_name(prefix)
        if norm.startswith(p):
            return norm[len(p) :]
    return norm


def similar_names(catalogue: Catalogue, *, threshold: float) -> list[Finding]:
    """Pairs of non-deprecated tags of one category with nearly the same id or name."""
    out = []
    categories = catalogue.config.categories
    live = [t for t in catalogue if t.status != "deprecated"]
    for a, b in itertools.combinations(live, 2):
        if a.category != b.category:
            continue
        prefixes = categories.get(a.category, [])
        name_a, name_b = _bare_name(a, prefixes), _bare_name(b, prefixes)
        by_name = difflib.SequenceMatcher(None, name_a, name_b).ratio()
        by_id = difflib.SequenceMatcher(None, a.id, b.id).ratio()
        score = max(by_name, by_id)
        if score < threshold:
            continue
        keep, drop = _keep_first(a, b, catalogue)
        out.append(
            Finding(
                kind="similar_name",
                tags=(a.id, b.id),
                values=(),
                score=score,
                detail=(
                    f"'{a.id}' ({a.display_name}) and '{b.id}' ({b.display_name}) in category "
                    f"'{a.category}' have {score:.0%} similar "
                    + ("names" if by_name >= by_id else "ids")
                ),
                suggestion=f"merge '{drop.id}' into '{keep.id}', or rename one to say how "
                "they differ",
            )
        )
    return out


def _keep_first(
    a: TagDefinition, b: TagDefinition, catalogue: Catalogue
) -> tuple[TagDefinition, TagDefinition]:
    """Of two overlapping tags, the one to keep (active first, then catalogue order)."""
    order = list(catalogue.tags)
    rank_a = (_STATUS_RANK[a.status], order.index(a.id))
    rank_b = (_STATUS_RANK[b.status], order.index(b.id))
    return (a, b) if rank_a <= rank_b else (b, a)


def _recent_dates(store: TagStore, runs: int) -> list[pd.Timestamp]:
    return store.snapshot_dates()[-runs:]


def _overlaps(
    store: TagStore, catalogue: Catalogue, dates: list[pd.Timestamp], config: LintConfig
) -> list[Finding]:
    """Value pairs over the Jaccard threshold in every one of ``dates``."""
    known = set(catalogue.tags)
    worst: pd.DataFrame | None = None
    for when in dates:
        with store.reader() as con:
            members = con.execute(
                "SELECT customer_id, tag_id, value FROM snapshots WHERE as_of = ?", [naive(when)]
            ).df()
        members = members[members["tag_id"].isin(known)]
        pairs = jaccard_pairs(members, min_members=config.min_members)
        pairs = pairs[pairs["jaccard"] >= config.jaccard]
        key = ["tag_a", "value_a", "tag_b", "value_b"]
        if worst is None:
            worst = pairs
        else:
            merged = worst.merge(pairs, on=key, suffixes=("", "_new"))
            merged["jaccard"] = merged[["jaccard", "jaccard_new"]].min(axis=1)
            for col in ("n_a", "n_b", "n_both"):
                merged[col] = merged[f"{col}_new"]
            worst = merged[pairs.columns]
    if worst is None:
        return []
    out = []
    for r in worst.sort_values("jaccard", ascending=False).to_dict("records"):
        a, b = catalogue.get(str(r["tag_a"])), catalogue.get(str(r["tag_b"]))
        keep, drop = _keep_first(a, b, catalogue)
        va, vb = f"{a.id}={r['value_a']}", f"{b.id}={r['value_b']}"
        runs = f"each of the last {len(dates)} snapshots" if len(dates) > 1 else "the snapshot"
        out.append(
            Finding(
                kind="overlap",
                tags=(a.id, b.id),
                values=(va, vb),
                score=float(r["jaccard"]),
                detail=(
                    f"{va} ({int(r['n_a']):,} customers) and {vb} ({int(r['n_b']):,}) share "
                    f"{int(r['n_both']):,}: Jaccard {float(r['jaccard']):.3f} at least, in {runs}"
                ),
                suggestion=f"merge '{drop.id}' into '{keep.id}' (set '{drop.id}' to "
                "deprecated and point its users at the other)",
            )
        )
    return out


def _dead(store: TagStore, catalogue: Catalogue, dates: list[pd.Timestamp]) -> list[Finding]:
    """Active tags empty, or one value for everyone, in every one of ``dates``."""
    with store.reader() as con:
        stats = con.execute(
            "SELECT s.as_of, s.tag_id, count(*) AS n, count(DISTINCT s.value) AS n_values, "
            "any_value(s.value) AS value FROM snapshots s WHERE s.as_of >= ? GROUP BY ALL",
            [naive(dates[0])],
        ).df()
        totals = dict(
            con.execute(
                "SELECT as_of, n_customers FROM runs WHERE status = 'succeeded' AND as_of >= ?",
                [naive(dates[0])],
            ).fetchall()
        )
    by_key = {(pd.Timestamp(r["as_of"]), r["tag_id"]): r for r in stats.to_dict("records")}
    out = []
    for tag in catalogue.active():
        rows = [by_key.get((pd.Timestamp(naive(d)), tag.id)) for d in dates]
        span = f"the last {len(dates)} snapshot(s)"
        if all(r is None for r in rows):
            out.append(
                Finding(
                    kind="empty",
                    tags=(tag.id,),
                    values=(),
                    score=float(len(dates)),
                    detail=f"'{tag.id}' marked no customer in {span}",
                    suggestion=f"check its rule or inputs, or deprecate '{tag.id}'",
                )
            )
            continue
        constant = all(
            r is not None
            and int(r["n_values"]) == 1
            and int(r["n"]) == int(totals.get(naive(d), -1) or -1)
            for r, d in zip(rows, dates, strict=True)
        )
        if constant:
            value = rows[-1]["value"] if rows[-1] is not None else ""
            out.append(
                Finding(
                    kind="constant",
                    tags=(tag.id,),
                    values=(f"{tag.id}={value}",),
                    score=float(len(dates)),
                    detail=f"'{tag.id}' gave every customer '{value}' in {span}",
                    suggestion=f"a tag that never tells customers apart: revise or deprecate "
                    f"'{tag.id}'",
                )
            )
    return out


def lint_catalogue(
    catalogue: Catalogue, store: TagStore | None, config: LintConfig | None = None
) -> list[Finding]:
    """Every redundancy and dead-tag finding: names from the catalogue, the rest from
    the last ``config.runs`` snapshots of ``store`` (skipped when it holds none).

    Empty and constant tags need ``config.runs`` snapshots before they are reported: a
    tag is only dead when it stayed so for that many runs.
    """
    config = config or LintConfig()
    findings = similar_names(catalogue, threshold=config.name_similarity)
    if store is None or not store.exists():
        return findings
    dates = _recent_dates(store, config.runs)
    if not dates:
        return findings
    findings.extend(_overlaps(store, catalogue, dates, config))
    if len(dates) >= config.runs:
        findings.extend(_dead(store, catalogue, dates))
    return findings
