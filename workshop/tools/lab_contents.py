"""The learners' Jupyter server opens a course notebook as its kernel will describe it.

JupyterLab writes the kernel's description into a notebook's metadata when the kernel starts
(``kernelspec`` and ``language_info``, with the interpreter's exact version: ``3.11.7`` on one
machine, ``3.11.2`` on a Debian 12 class VM). When that differs from what the file holds, the
notebook is marked as changed the moment it opens: an unsaved-changes dot on a notebook nobody
edited, and a "save your changes?" question when it is closed. No version written into the
file can match every machine, so the course's notebooks store the version-free part
(``kernelspec`` python3, ``language_info`` ``{"name": "python"}``, see
:data:`workshop.grading.nbgrader_glue.KERNELSPEC`) and this contents manager completes it, as
it is served, with what the python3 kernel of this server will report: the file on disk is
unchanged, and a learner's saved notebook holds what JupyterLab would have written anyway.

The learners' settings (``deploy/jupyter/learner``) select it:
``ServerApp.contents_manager_class = workshop.tools.lab_contents.CourseContentsManager``.
"""

from __future__ import annotations

import os
import sys

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

KERNEL = "python3"


def python_language_info() -> dict:
    """``language_info`` as ipykernel running in this interpreter reports it (kernel_info)."""
    return {"name": "python", "version": sys.version.split()[0], "mimetype": "text/x-python",
            "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
            "pygments_lexer": "ipython3", "nbconvert_exporter": "python",
            "file_extension": ".py"}


def _runs_in_this_interpreter(argv: list[str]) -> bool:
    """True when a kernel command line starts this interpreter (jupyter_client runs ``python``,
    ``python3`` and ``python3.X`` as the server's own interpreter)."""
    if not argv:
        return False
    aliases = {"python", f"python{sys.version_info[0]}", "python%i.%i" % sys.version_info[:2]}
    first = argv[0]
    return first in aliases or os.path.realpath(first) == os.path.realpath(sys.executable)


class CourseContentsManager(AsyncLargeFileManager):
    """The server's default contents manager; a python3 notebook it serves carries the
    ``kernelspec`` and ``language_info`` its kernel will report (see the module's docstring)."""

    _kernel_metadata: dict | None = None

    def kernel_metadata(self) -> dict:
        """``{"kernelspec": ..., "language_info": ...}`` as JupyterLab will write them when the
        python3 kernel starts; empty when that kernel is not this interpreter's ipykernel (then
        nothing is completed: what it will report is not known here)."""
        if self._kernel_metadata is None:
            found: dict = {}
            try:
                specs = self.parent.kernel_spec_manager
                spec = specs.get_kernel_spec(KERNEL)
            except Exception:   # no such kernel, or specs kept elsewhere (a gateway): leave it
                spec = None
            if spec is not None and _runs_in_this_interpreter(list(spec.argv)):
                found = {"kernelspec": {"name": KERNEL, "display_name": spec.display_name,
                                        "language": spec.language},
                         "language_info": python_language_info()}
            self._kernel_metadata = found
        return self._kernel_metadata

    async def get(self, path, content=True, type=None, format=None, **kwargs):
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if model.get("type") == "notebook" and model.get("content") is not None:
            complete_metadata(model["content"], self.kernel_metadata())
        return model


def complete_metadata(nb, kernel: dict) -> None:
    """Give a python3 notebook the ``kernel`` metadata (from
    :meth:`CourseContentsManager.kernel_metadata`); other notebooks are left as they are."""
    if not kernel:
        return
    meta = nb.setdefault("metadata", {})
    spec = meta.get("kernelspec") or {}
    language = (meta.get("language_info") or {}).get("name", "python")
    if spec.get("name", KERNEL) != KERNEL or language != "python":
        return
    meta["kernelspec"] = dict(kernel["kernelspec"])
    meta["language_info"] = dict(kernel["language_info"])
