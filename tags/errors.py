"""Errors raised by the ``tags`` package.

Every message says what was expected, then what was got, and names the file, tag and
rule it is about. Rule errors quote the rule and point at the offending column.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AudienceError",
    "AuditError",
    "BacktestError",
    "BackupError",
    "CatalogueError",
    "PolicyError",
    "RuleError",
    "RuleEvalError",
    "RuleNameError",
    "RuleSyntaxError",
    "RuleTypeError",
    "TagStoreError",
    "TagsError",
    "UnknownTagError",
]


class TagsError(Exception):
    """Base class of every error the ``tags`` package raises on purpose."""


class CatalogueError(TagsError):
    """A catalogue file or tag definition breaks the catalogue's schema or naming rules."""


class UnknownTagError(CatalogueError):
    """A tag id asked for is not in the catalogue."""


class BacktestError(TagsError):
    """A backtest cannot run with the dates, outcome or tag it was given."""


class RuleError(TagsError):
    """A rule cannot be compiled or evaluated.

    The message names where the rule comes from, quotes the rule text and puts a caret
    under the offending column.

    Attributes:
        reason: What is wrong, in one sentence.
        text: The rule text.
        column: 1-based column of the problem in ``text`` (``None``: the whole rule).
        where: Where the rule comes from (e.g. "tag 'rfm_segment', case 2").
        width: How many characters to underline.
    """

    def __init__(
        self,
        reason: str,
        *,
        text: str = "",
        column: int | None = None,
        where: str = "",
        width: int = 1,
    ) -> None:
        self.reason = reason
        self.text = text
        self.column = column
        self.where = where
        self.width = max(1, width)
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.where}: {self.reason}" if self.where else self.reason
        if not self.text:
            return head
        # Show one line of the rule (rules are one-liners; multi-line YAML folds them).
        line = self.text.replace("\n", " ")
        if self.column is None:
            return f"{head}\n  {line}"
        col = min(max(self.column, 1), len(line) + 1)
        width = min(self.width, max(1, len(line) - col + 1))
        return f"{head}\n  {line}\n  {' ' * (col - 1)}{'^' * width}"

    def located(self, where: str) -> RuleError:
        """The same error, re-issued with ``where`` (the tag, case or file) prefixed."""
        where = f"{where}, {self.where}" if self.where else where
        return type(self)(
            self.reason, text=self.text, column=self.column, where=where, width=self.width
        )


class RuleSyntaxError(RuleError):
    """The rule text does not parse, or uses a construct in the wrong place."""


class RuleNameError(RuleError):
    """The rule names a column, function or event type that does not exist."""


class RuleTypeError(RuleError):
    """The rule combines values of incompatible types (e.g. a number and a string)."""


class RuleEvalError(RuleError):
    """A compiled rule failed on the data it was given (e.g. a value outside the catalogue)."""


class TagStoreError(TagsError):
    """The tag store is missing, holds no matching snapshot, or got a malformed table."""


class AccessDenied(TagsError):
    """A role asked for tags, or an action, that the access policy does not grant it."""


class PolicyError(TagsError):
    """The access policy file is missing or invalid."""


class AuditError(TagsError):
    """The audit log cannot be written or read, or its hash chain is broken."""


class BackupError(TagsError):
    """A backup cannot be written, or a backup folder fails its manifest checks."""


class AudienceError(TagsError):
    """An audience expression or a saved audience is invalid or unknown."""
