"""Grading: self-checks in a notebook (:func:`check`) and, later, the isolated class grader."""

from .check import NOT_IMPLEMENTED, Verdict, check  # noqa: F401
