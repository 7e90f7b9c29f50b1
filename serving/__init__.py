"""Serving tags: the BentoML tag service and batch tagging runs."""

from __future__ import annotations

from serving.errors import ServingError

__all__ = ["ServingError"]
