"""Grading: self-checks in a notebook (:func:`check`, :func:`grade`) and the isolated class
grader (``python -m workshop grade``, :mod:`workshop.grading.grader`: notebook -> static checks
-> sandbox -> runner -> verdict -> records and feedback).

The notebook convention (solution and test cells) is documented in
:mod:`workshop.grading.notebook`.
"""

from .check import NOT_IMPLEMENTED, Verdict, check, grade  # noqa: F401
