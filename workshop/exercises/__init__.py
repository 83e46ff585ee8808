"""The exercise registry: every exercise of the course, declared once.

Chapter modules (``boxes``, ``anchors``, ...) call :func:`register`; :func:`get` and
:func:`all_exercises` import every module of this package (but ``spec``) on first use, so a new
chapter is a new module here and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from .spec import TIERS, Case, Exercise, Mistake, Output  # noqa: F401

_REGISTRY: dict[str, Exercise] = {}
_loaded = False


def register(exercise: Exercise) -> Exercise:
    if exercise.name in _REGISTRY and _REGISTRY[exercise.name] is not exercise:
        raise ValueError(f"exercise {exercise.name!r} is declared twice")
    _REGISTRY[exercise.name] = exercise
    return exercise


def _load() -> None:
    global _loaded
    if not _loaded:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if info.name != "spec" and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True


def get(name: str) -> Exercise:
    """The exercise called ``name`` (e.g. ``"iou"``)."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no exercise {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def all_exercises() -> list[Exercise]:
    _load()
    return list(_REGISTRY.values())
