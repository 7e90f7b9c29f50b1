"""Real-time tags: events in (HTTP or a NATS JetStream stream), touched customers re-tagged.

Depends on ``features`` (validation, the live event log, feature code), ``tags`` (rules,
the tag store's live values and transitions) and ``scoring`` (the champion predictors);
``tagsmith`` wires it to a project, the service's ``POST /events`` and the
``tagsmith stream run`` consumer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streaming.errors import BadEvents, Busy, StreamingError
    from streaming.records import event_id_of, raw_events
    from streaming.tagger import MAX_EVENTS_PER_BATCH, ApplyResult, LiveTagger, live_as_of

__all__ = [
    "MAX_EVENTS_PER_BATCH",
    "ApplyResult",
    "BadEvents",
    "Busy",
    "LiveTagger",
    "StreamingError",
    "event_id_of",
    "live_as_of",
    "raw_events",
]

# Names are imported from their modules on first use: `import streaming.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "BadEvents": "streaming.errors",
    "Busy": "streaming.errors",
    "StreamingError": "streaming.errors",
    "event_id_of": "streaming.records",
    "raw_events": "streaming.records",
    "MAX_EVENTS_PER_BATCH": "streaming.tagger",
    "ApplyResult": "streaming.tagger",
    "LiveTagger": "streaming.tagger",
    "live_as_of": "streaming.tagger",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
