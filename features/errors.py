"""Errors raised by the ``features`` package.

Every message says what was expected, then what was got, and names the file, row and
field when there is one.
"""

from __future__ import annotations


class FeaturesError(Exception):
    """Base class of every error the ``features`` package raises on purpose."""


class SchemaError(FeaturesError):
    """A DataFrame or record crossing a package boundary breaks the fact-tag contract."""


class FactFileError(FeaturesError):
    """A whole input file cannot be imported (missing column, empty, undecodable, ...).

    Nothing is written when this is raised.
    """


class SpecError(FeaturesError):
    """A feature spec (YAML) is invalid."""


class StoreError(FeaturesError):
    """The fact or feature store is missing, locked or inconsistent."""
