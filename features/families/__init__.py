"""Feature families at one cutoff, one module each, computed from the event index.

Each module's ``columns(cut, ...)`` returns (or yields, a few at a time) the family's
columns for the customers of one :class:`~features.families.base.Cutoff`, as numpy
arrays in catalogue order; :mod:`features.cutoffs` writes them into the output frame.
What every column means is written once, in :mod:`features.catalog`.
"""
