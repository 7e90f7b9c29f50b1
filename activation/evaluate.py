"""Which customers a trigger fires for, from the before/after state of one transition group.

Pure computation: no I/O, no clock. A trigger's expression is an audience expression
(``tags.segments``) over one row per customer and one column per tag; it is evaluated
on the state before the group and on the state right after it, and the trigger fires
for customers for whom it became true (``on_enter``) or stopped being true
(``on_exit``). Null counts as not true, as everywhere in the rule language.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from activation.definitions import Trigger
from activation.payloads import canonical, item_key, plain
from tags.rules import Rule

__all__ = ["Firing", "fire", "trigger_event", "trigger_items", "wide_state"]


@dataclass(frozen=True)
class Firing:
    """Customers a trigger fired for in one group.

    Attributes:
        customers: customer_id plus one column per included tag (values after the
            group; None where the customer has no value).
        candidates: Customers whose watched tags changed in the group.
    """

    customers: pd.DataFrame
    candidates: int


def wide_state(
    states: pd.DataFrame, column: str, tags: Sequence[str], boolean_tags: Collection[str]
) -> pd.DataFrame:
    """One row per customer, one column per tag, from the long ``states`` table.

    Args:
        states: customer_id, tag_id and the value column (None: no row).
        column: ``before`` or ``after``.
        tags: Columns to produce (absent ones are all missing / false).
        boolean_tags: Tags that are true where a row exists, false elsewhere.
    """
    customers = pd.Index(sorted(states["customer_id"].unique()), name="customer_id")
    wide = states.pivot(index="customer_id", columns="tag_id", values=column).reindex(customers)
    out = pd.DataFrame(index=customers)
    for tag in tags:
        values = wide[tag] if tag in wide.columns else pd.Series(None, index=customers)
        if tag in boolean_tags:
            out[tag] = values.notna().to_numpy()
        else:
            out[tag] = values.astype("string")
    return out.reset_index()


def fire(
    trigger: Trigger,
    rule: Rule,
    states: pd.DataFrame,
    *,
    tags: Sequence[str],
    boolean_tags: Collection[str],
) -> Firing:
    """The customers ``trigger`` fires for, given the group's before/after states.

    Args:
        trigger: The trigger (its ``change``: entered or left).
        rule: Its compiled expression.
        states: ``tags.transitions.TransitionLog.states`` of the group.
        tags: Every tag the expression reads plus the included ones.
        boolean_tags: Which of them are boolean.
    """
    include = list(trigger.include)
    if states.empty:
        return Firing(pd.DataFrame(columns=["customer_id", *include]), 0)
    before = wide_state(states, "before", tags, boolean_tags)
    after = wide_state(states, "after", tags, boolean_tags)
    was = np.asarray(rule.mask(before), dtype=bool)
    now = np.asarray(rule.mask(after), dtype=bool)
    hit = (~was & now) if trigger.change == "entered" else (was & ~now)
    chosen = after.loc[hit, ["customer_id", *include]].reset_index(drop=True)
    return Firing(chosen, len(after))


def _column(values: pd.Series) -> list[Any]:
    """A tag column as plain Python values (None for missing), fast for large frames."""
    if values.dtype == bool:
        return values.tolist()
    return [
        None if v is None else str(v) for v in values.astype(object).where(values.notna(), None)
    ]


def trigger_items(
    trigger: Trigger,
    version: int,
    firing: Firing,
    *,
    group_id: str,
    as_of: pd.Timestamp,
) -> list[tuple[str, str, bytes]]:
    """(idempotency key, customer id, payload JSON) per customer the trigger fired for.

    The key is derived from the trigger, the group and the customer, so the same
    firing always gets the same key. The payload is exactly ``canonical`` of the event
    (a test checks it); it is assembled from pre-encoded parts because a group can fire
    for hundreds of thousands of customers.
    """
    as_of_text = as_of.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    include = sorted(trigger.include)
    customers = [str(c) for c in firing.customers["customer_id"].tolist()]
    columns = [_column(firing.customers[t]) for t in include]
    encoded: dict[Any, bytes] = {}

    def enc(value: Any) -> bytes:
        if value not in encoded:
            encoded[value] = canonical(value)
        return encoded[value]

    # Keys in canonical (sorted) order: as_of, change, customer_id, id, purpose, tags,
    # trigger, trigger_version, type.
    head = b'{"as_of":' + canonical(as_of_text) + b',"change":' + canonical(trigger.change)
    middle = b',"purpose":' + canonical(trigger.purpose) + b',"tags":{'
    tail = (
        b'},"trigger":'
        + canonical(trigger.name)
        + b',"trigger_version":'
        + canonical(version)
        + b',"type":"trigger"}'
    )
    names = [canonical(t) + b":" for t in include]
    prefix = "\x1f".join(["trigger", trigger.name, group_id, trigger.change, ""])
    out = []
    for i, customer in enumerate(customers):
        key = hashlib.sha256((prefix + customer).encode("utf-8")).hexdigest()[:32]
        tags = b",".join(name + enc(col[i]) for name, col in zip(names, columns, strict=True))
        body = (
            head
            + b',"customer_id":'
            + canonical(customer)
            + b',"id":"'
            + key.encode("ascii")
            + b'"'
            + middle
            + tags
            + tail
        )
        out.append((key, customer, body))
    return out


def trigger_event(
    trigger: Trigger,
    version: int,
    customer: str,
    tags: dict[str, Any],
    *,
    group_id: str,
    as_of: str,
) -> dict[str, Any]:
    """One trigger event as a plain dict (the reference :func:`trigger_items` must match)."""
    return {
        "id": item_key("trigger", trigger.name, group_id, trigger.change, customer),
        "type": "trigger",
        "trigger": trigger.name,
        "trigger_version": version,
        "purpose": trigger.purpose,
        "customer_id": customer,
        "change": trigger.change,
        "as_of": as_of,
        "tags": {t: plain(v) for t, v in tags.items()},
    }
