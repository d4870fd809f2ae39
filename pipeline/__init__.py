"""posemask's Luigi tasks. ``luigi --module pipeline <Task>`` finds every task here."""

from pipeline.data import BuildCache, COCOPersons, VOCPersons

__all__ = ["BuildCache", "COCOPersons", "VOCPersons"]
