"""The learner's lab in a real browser (Chromium driven by Playwright): every learner notebook
opened and run as a learner runs it, in the lab `make lab` starts and through the class hub.

Opened, a notebook must look untouched (no unsaved-changes mark), with no pop-up and none of
nbgrader's instructor tools. After Run → Run All Cells every cell has run, with no error but an
exercise stub's, no red TensorFlow/CUDA log lines or other stderr output, no dialog, and no error
in the browser's console. A full-page screenshot of each notebook goes to test-artifacts/browser/
(git-ignored).

Needs /usr/bin/chromium and Playwright (requirements-deploy.txt); the hub's test also needs what
tests/class_hub.py needs. Skipped with the reason without them, a failure on CI.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import requests
from class_hub import free_port, running_hub
from lab_browser import ARTIFACTS, LabPage, launch, require_browser

from workshop.tools import lab as course_lab

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]   # one browser, in order (the class-arrival load test shares the group)

ROOT = Path(__file__).resolve().parents[1]
LEARNER_NOTEBOOKS = sorted(course_lab.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
RUN_ALL_TIMEOUT = 15 * 60      # per notebook; they take from seconds to a few minutes
VIEWPORT = {"width": 1400, "height": 900}


def make_environment() -> dict:
    """The environment `make lab` gives JupyterLab: this one without the variables the test run
    sets for itself (TensorFlow's, CUDA's, Jupyter's), plus the Makefile's own exports."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "CUDA_", "JUPYTER", "PYTEST_", "MPLBACKEND"))}
    makefile = (ROOT / "Makefile").read_text()
    for name, value in re.findall(r"^export (\w+) \?= (\S+)", makefile, flags=re.M):
        env[name] = value
    return env


class Lab:
    """`python -m workshop lab`'s command line (what `make lab` runs) on a free port with a
    token. The lab's own settings and workspaces live in a temporary folder, with autosave off,
    so that the notebooks the test runs are never written back into notebooks/ (a request that
    would write one fails the test)."""

    def __init__(self, tmp: Path):
        self.token, self.port = secrets.token_hex(16), free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        settings = tmp / "settings"
        autosave = settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
        autosave.parent.mkdir(parents=True)
        autosave.write_text(json.dumps({"autosave": False}))
        env = course_lab.environment(make_environment())
        env.update(JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
        command = course_lab.command(port=self.port,
                                     extra=[f"--IdentityProvider.token={self.token}"])
        self.log_path = tmp / "lab.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._wait()

    def _wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.api("GET", "/api/status").ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError("the lab did not start:\n" + self.log_path.read_text()[-3000:])

    def api(self, method: str, path: str) -> requests.Response:
        return requests.request(method, self.origin + path, timeout=30,
                                headers={"Authorization": f"token {self.token}"})

    def shut_down_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions").json():
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    served = Lab(tmp_path_factory.mktemp("lab"))
    try:
        yield served
    finally:
        served.close()


def _check_notebook(lab_page: LabPage, name: str, shot: str) -> list[str]:
    """Everything the module's docstring promises, on the notebook open in ``lab_page``."""
    lab_page.wait_for_notebook()
    problems = [f"on opening: {p}" for p in lab_page.fresh_problems()]
    seconds = lab_page.run_all(RUN_ALL_TIMEOUT)
    problems += [f"after Run All: {p}" for p in lab_page.run_problems()]
    problems += [f"browser console: {c}" for c in lab_page.console]
    path = lab_page.screenshot(shot)
    print(f"{name}: Run All took {seconds:.0f} s; screenshot {path.relative_to(ROOT)}")
    return problems


@pytest.mark.parametrize("notebook", LEARNER_NOTEBOOKS, ids=[p.stem for p in LEARNER_NOTEBOOKS])
def test_the_lab_runs_a_learner_notebook(lab, browser, notebook):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = LabPage(context.new_page(), lab.origin)
        page.page.goto(f"{lab.origin}/lab/tree/{notebook.name}?reset&token={lab.token}")
        problems = _check_notebook(page, notebook.name, f"lab-{notebook.stem}")
        problems += [f"the lab wrote into notebooks/: {save}" for save in page.saves]
        assert not problems, f"{notebook.name} in the browser:\n  " + "\n  ".join(problems)
    finally:
        context.close()
        lab.shut_down_kernels()


def test_a_learner_runs_notebook_3_through_the_hub(browser):
    with running_hub(learners=1) as hub:
        name = hub.learners[0]
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = LabPage(context.new_page(), hub.base)
            p = page.page
            p.goto(f"{hub.base}/hub/login")
            p.fill("input[name=username]", name)
            p.fill("input[name=password]", hub.class_password)
            p.click("input[type=submit], button[type=submit]")
            # the hub spawns the learner's server, then lands in the lab on ~/course
            p.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=300_000)
            p.wait_for_selector(".jp-DirListing-item", timeout=120_000)
            p.dblclick(".jp-DirListing-item:has-text('03_iou_nms.ipynb')")
            problems = _check_notebook(page, "03_iou_nms.ipynb (hub)", "hub-03_iou_nms")
            assert not problems, "notebook 3 through the hub:\n  " + "\n  ".join(problems)
            # the learners' nbgrader tool, where they fetch and submit: File → Assignment List
            items = page.menu_items("File")
            assert not any(w in i for i in items for w in ("Formgrader", "Create Assignment")), items
            page.menu_entry("File", "Assignment List").click()
            assignments = p.locator(".nbgrader-mainarea-widget:not(.lm-mod-hidden)")
            assignments.wait_for(state="visible", timeout=60_000)
            p.wait_for_function("() => !document.querySelector('.nbgrader-mainarea-widget')"
                                ".innerText.includes('Loading')", timeout=60_000)
            time.sleep(2)
            text = assignments.inner_text()
            page.screenshot("hub-assignments")
            # the exchange is there (nothing released yet: "no assignments to fetch")
            assert "Released assignments" in text, text
            assert "Error" not in text and "does not exist" not in text, text
            assert not page.dialogs() and not page.console, (page.dialogs(), page.console)
        finally:
            context.close()
        print(f"screenshots in {ARTIFACTS.relative_to(ROOT)}/")
