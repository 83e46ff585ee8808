"""The exercise registry: every exercise of the course, declared once.

Chapter modules (``boxes``, ``anchors``, ...) call :func:`register`; :func:`get` and
:func:`all_exercises` import every module of this package (but ``spec``) on first use, so a new
chapter is a new module here and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

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


def catalogue(chapter: str | None = None) -> str:
    """The exercises by chapter (notebook stem), each with its tiers, what it computes
    (``summary``) and the function a learner writes (``signature``): the text of
    ``python -m workshop exercises [CHAPTER]``."""
    chapters: dict[str, list[Exercise]] = {}
    for ex in sorted(all_exercises(), key=lambda e: e.chapter):
        chapters.setdefault(ex.chapter, []).append(ex)
    if chapter is not None and chapter not in chapters:
        raise KeyError(f"no chapter {chapter!r}; known: {', '.join(chapters)}")
    lines = []
    for name, exercises in chapters.items():
        if chapter in (None, name):
            lines.append(name)
            for ex in exercises:
                lines.append(f"  {ex.name:<22}{' '.join(t for t in TIERS if t in ex.tiers):<17}{ex.summary}")
                lines.append(f"  {'':<39}{ex.signature}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m workshop exercises",
                                 description="list the course's exercises by chapter")
    ap.add_argument("chapter", nargs="?", help="one chapter (notebook stem, e.g. 03_iou_nms)")
    ap.add_argument("--track", help="instead, a track's plan and learner time per chapter "
                                    "(one-day, two-day, full)")
    args = ap.parse_args(argv)
    try:
        if args.track:
            from .. import tracks

            print(tracks.plan(tracks.get(args.track)))
        else:
            print(catalogue(args.chapter))
    except KeyError as err:
        print(err.args[0], file=sys.stderr)
        return 2
    return 0
