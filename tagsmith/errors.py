"""Errors raised by the ``tagsmith`` wiring package (project and config)."""

from __future__ import annotations


class TagsmithError(Exception):
    """Base class of errors raised by the CLI wiring and project configuration."""


class ConfigError(TagsmithError):
    """``tagsmith.yaml`` (or another project file) is missing or invalid."""


class ProjectNotFoundError(ConfigError):
    """The directory given as the project holds no ``tagsmith.yaml``."""


class OutputPathError(TagsmithError):
    """A command's output path is inside the project's stores, or exists already."""
