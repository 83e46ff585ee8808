"""A temporary folder of a test's own, for tests that check what a run leaves behind.

The test run's temporary folder (see ``conftest.py``) is shared by both workers: a notebook
that the other worker is running has its scratch folders there at the same moment. A test
that compares the folder's contents before and after its own run would count them as its
leftovers, so it runs with a folder no one else writes to.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def private_tempdir(folder: Path):
    """``TMPDIR`` and :mod:`tempfile`'s default folder set to ``folder`` (this process and the
    processes it starts) for the duration of the block, then put back."""
    saved_env, saved_default = os.environ.get("TMPDIR"), tempfile.tempdir
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        tempfile.tempdir = saved_default
