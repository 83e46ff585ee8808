"""The learners' lab without a browser (tests/test_browser.py drives it in one): `make lab` runs
`python -m workshop lab`; the learners' Jupyter settings; every notebook names its kernel, and
the learners' server opens it as that kernel describes it, so that JupyterLab does not mark a
notebook nobody edited as changed."""

import asyncio
import json
import re
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from traitlets.config import Configurable

from workshop.grading.nbgrader_glue import KERNELSPEC, LANGUAGE_INFO
from workshop.tools import lab
from workshop.tools.course_report import NOTEBOOKS, SOLUTIONS, course_notebooks
from workshop.tools.lab_contents import CourseContentsManager

ROOT = Path(__file__).resolve().parents[1]
LEARNER = ROOT / "deploy" / "jupyter" / "learner"
ALL_NOTEBOOKS = course_notebooks(SOLUTIONS) + course_notebooks(NOTEBOOKS)


def test_make_lab_runs_the_course_lab_command():
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "-m workshop lab --ip=$(IP) --port=$(PORT)" in recipe, recipe
    command = lab.command(ip="0.0.0.0", port=8123)
    assert command[1:3] == ["-m", "jupyterlab"] and "--no-browser" in command
    assert "--ip=0.0.0.0" in command and "--port=8123" in command
    assert f"--ServerApp.root_dir={ROOT / 'notebooks'}" in command
    assert lab.environment({"PATH": "/bin"}) == {"PATH": "/bin", "JUPYTER_CONFIG_PATH": str(LEARNER)}


def test_the_learners_settings():
    disabled = json.loads((LEARNER / "labconfig" / "page_config.json").read_text())["disabledExtensions"]
    for plugin in ("formgrader", "create-assignment", "course-list", "menu"):
        assert disabled.get(f"@jupyter/nbgrader:{plugin}") is True, plugin
    assert disabled.get("@jupyterlab/apputils-extension:announcements") is True   # news pop-up
    # the learners' own nbgrader tool stays, in the File menu
    overrides = json.loads((LEARNER / "labconfig" / "default_setting_overrides.json").read_text())
    menus = overrides["@jupyterlab/mainmenu-extension:plugin"]["menus"]
    assert any(item.get("command") == "nbgrader:open-assignment-list"
               for menu in menus if menu["id"] == "jp-mainmenu-file" for item in menu["items"])
    server = json.loads((LEARNER / "jupyter_server_config.json").read_text())
    assert server["ServerApp"]["contents_manager_class"] == (
        "workshop.tools.lab_contents.CourseContentsManager")


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=[f"{p.parent.name}/{p.stem}" for p in ALL_NOTEBOOKS])
def test_every_notebook_names_its_kernel(path):
    meta = json.loads(path.read_text())["metadata"]
    assert meta.get("kernelspec") == KERNELSPEC, f"{path}: run `make release` (kernelspec)"
    if path.parent == NOTEBOOKS:   # version-free: the learners' server completes it
        assert meta.get("language_info") == LANGUAGE_INFO, f"{path}: run `make release`"
    else:
        assert (meta.get("language_info") or {}).get("name") == "python", path


class _Server(Configurable):
    """What the contents manager reads of its Jupyter server: its kernel specs."""

    def __init__(self):
        super().__init__()
        self.kernel_spec_manager = KernelSpecManager()


def _kernel_info() -> dict:
    """The python3 kernel's own ``kernel_info`` reply (started and stopped here)."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        return client.kernel_info(reply=True, timeout=60)["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_the_learners_server_opens_notebooks_as_their_kernel_describes_them():
    """What JupyterLab writes when the kernel starts (kernelspec from the server's spec,
    language_info from the kernel's reply) is already there: the notebook opens unchanged."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    expected = {"kernelspec": {"name": "python3", "display_name": spec.display_name,
                               "language": spec.language},
                "language_info": _kernel_info()["language_info"]}
    contents = CourseContentsManager(parent=_Server(), root_dir=str(NOTEBOOKS))
    for path in course_notebooks(NOTEBOOKS):
        model = asyncio.run(contents.get(path.name))
        meta = model["content"]["metadata"]
        assert {k: meta.get(k) for k in expected} == expected, path.name
        assert json.loads(path.read_text())["metadata"]["language_info"] == LANGUAGE_INFO   # disk
    # a notebook of another kernel is served as it is
    other = {"metadata": {"kernelspec": {"name": "ir", "display_name": "R", "language": "R"},
                          "language_info": {"name": "R"}}}
    from workshop.tools.lab_contents import complete_metadata

    complete_metadata(other, contents.kernel_metadata())
    assert other["metadata"]["language_info"] == {"name": "R"}
