"""Real-time tags: events in (HTTP or a NATS JetStream stream), touched customers re-tagged.

Depends on ``features`` (validation, the live event log, feature code), ``tags`` (rules,
the tag store's live values and transitions) and ``scoring`` (the champion predictors);
``tagsmith`` wires it to a project, the service's ``POST /events`` and the
``tagsmith stream run`` consumer.
"""

from __future__ import annotations

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
