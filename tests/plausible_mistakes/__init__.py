"""Learner implementations with one plausible mistake each, written the way learners write
them (loops, numpy, float32, lists) and independently of the registry's own wrong
implementations, each labelled with the declared mistake (``Mistake.name``) that explains it, or
``None`` when no declared mistake does (then only a generic description, or silence, is right).

tests/test_diagnoses.py runs every one through the self-check on every case and counts: caught
(the verdict fails), right (exactly the labelled mistake is named), misleading (a mistake other
than the label is named) and none.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Plausible:
    exercise: str          # registry name, e.g. "iou"
    label: str | None      # the Mistake.name that must be named, or None
    fn: Callable
    about: str             # what the learner did, in a few words
    tier: str = "numpy"    # "loops" or "numpy" (TF-tier mistakes are checked in their own tests)


ALL: list[Plausible] = []


def plausible(exercise: str, label: str | None, about: str, tier: str = "numpy"):
    """Register the decorated function as a plausible mistake."""
    def register(fn):
        ALL.append(Plausible(exercise, label, fn, about, tier))
        return fn
    return register


for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
