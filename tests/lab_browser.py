"""JupyterLab driven in a real browser, for the tests: Playwright for Python with the system's
Chromium (/usr/bin/chromium, never a browser Playwright downloads). A :class:`LabPage` opens a
notebook as a learner does, says what is wrong with it before and after Run All, and takes a
screenshot.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from conftest import require

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"   # git-ignored

# What a stderr output may not say: TensorFlow's and CUDA's start-up lines (shown in red).
TF_LOG = re.compile(r"cuInit|oneDNN|cuda|absl::InitializeLog|TF_ENABLE_ONEDNN_OPTS|"
                    r"cpu_feature_guard|tensorflow/core|xla/", re.IGNORECASE)
# The only error a learner notebook may show before its exercises are written: a stub's.
STUB_ERROR = re.compile(r"NotImplementedError|not implemented yet")
INSTRUCTOR_UI = ("Formgrader", "Create Assignment", "Course List", "Manage Assignments")


def require_browser() -> None:
    """Chromium and Playwright, or skip/fail as conftest.require does."""
    require(os.access(CHROMIUM, os.X_OK), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "Playwright for Python (pip install -r requirements-deploy.txt)")


def launch(playwright):
    """Headless Chromium from the system (root needs --no-sandbox)."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=args + ["--disable-dev-shm-usage"])


# JupyterLab's cells, prompts and outputs, read in the page
_STATE_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim());
  return {status: ind ? ind.dataset.status : null, prompts};
}"""

_OUTPUTS_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const out = [];
  nb.querySelectorAll('.jp-CodeCell').forEach((cell, i) => {
    cell.querySelectorAll('.jp-OutputArea-output').forEach(o => {
      const mime = o.dataset.mimeType || '';
      if (mime.includes('stderr') || mime.includes('error') || o.classList.contains('jp-mod-error'))
        out.push({cell: i, mime, text: o.textContent.slice(0, 3000)});   // also off-screen
    });
  });
  return out;
}"""


class LabPage:
    """One Playwright page on a JupyterLab, with the console's errors collected."""

    def __init__(self, page, origin: str):
        self.page, self.origin = page, origin.rstrip("/")
        self.console: list[str] = []
        self.saves: list[str] = []       # requests that would write a notebook
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.console.append(f"page error: {err}"))
        page.on("request", self._on_request)

    def _on_request(self, request) -> None:
        url = request.url.split("?")[0]
        if (request.method in ("PUT", "PATCH", "POST", "DELETE") and "/api/contents/" in url
                and "/checkpoints" not in url):
            self.saves.append(f"{request.method} {url}")

    def _on_console(self, msg) -> None:
        # every error counts: JupyterLab, nbgrader's learner side and the course's settings
        # log none in a healthy lab, so nothing here is waved through as known noise
        if msg.type == "error":
            self.console.append(f"{msg.text} ({msg.location.get('url', '')})")

    # -- opening ----------------------------------------------------------------------------
    def wait_for_notebook(self, timeout_s: float = 300) -> None:
        """Until the notebook is shown and its kernel has started and is idle."""
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=timeout_s * 1000)
        self.page.wait_for_function(
            f"() => {{ const s = ({_STATE_JS})(); return s && s.status === 'idle'; }}",
            timeout=timeout_s * 1000, polling=500)

    def fresh_problems(self, settle_s: float = 3.0) -> list[str]:
        """What is wrong with a notebook nobody has touched: an unsaved-changes mark, the news
        pop-up, nbgrader's instructor tools, a dialog. ``settle_s`` gives late pop-ups time."""
        time.sleep(settle_s)
        page, found = self.page, []
        dirty = page.eval_on_selector_all(
            ".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-dirty", "els => els.map(e => e.innerText)")
        if dirty:
            found.append(f"marked as changed (unsaved-changes dot) without an edit: {dirty}")
        text = page.inner_text("body")
        if "notified about official Jupyter news" in text:
            found.append("JupyterLab's news pop-up")
        menus = page.eval_on_selector_all(".lm-MenuBar-itemLabel", "els => els.map(e => e.innerText)")
        if "Nbgrader" in menus:
            found.append(f"nbgrader's menu in the menu bar: {menus}")
        chrome = page.eval_on_selector_all(   # the sidebars' tabs and panels, the toolbars
            ".jp-SideBar .lm-TabBar-tab, .jp-SidePanel, .jp-Toolbar",
            "els => els.map(e => (e.title || '') + ' ' + e.innerText)")
        found += [f"instructor tool in the lab: {w!r}" for w in INSTRUCTOR_UI
                  if any(w.lower() in c.lower() for c in chrome)]
        found += self.dialogs()
        return found

    def menu_entry(self, menu: str, entry: str):
        """The enabled entry ``entry`` of the main menu ``menu``, opened (Lumino ignores a click
        that lands on an entry while its menu is still opening: the entry is hovered first)."""
        self.page.click(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")   # the notebook, active
        self.page.click(f".lm-MenuBar-itemLabel:text-is('{menu}')")
        item = self.page.locator(f".lm-Menu .lm-Menu-item:not(.lm-mod-disabled)"
                                 f":has(.lm-Menu-itemLabel:text-is('{entry}'))")
        item.wait_for(state="visible", timeout=10_000)
        time.sleep(0.3)
        item.hover()
        return item

    def menu_items(self, menu: str) -> list[str]:
        """The visible entries of a main-menu menu (opened, read, closed)."""
        self.page.click(f".lm-MenuBar-itemLabel:text-is('{menu}')")
        self.page.wait_for_selector(".lm-Menu", timeout=10_000)
        items = self.page.eval_on_selector_all(
            ".lm-Menu .lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel",
            "els => els.map(e => e.innerText).filter(t => t)")
        self.page.keyboard.press("Escape")
        return items

    def dialogs(self) -> list[str]:
        return [f"a dialog: {t[:500]!r}" for t in
                self.page.eval_on_selector_all(".jp-Dialog", "els => els.map(e => e.innerText)")]

    # -- running ----------------------------------------------------------------------------
    def run_all(self, timeout_s: float = 900) -> float:
        """Run → Run All Cells, as a learner does; seconds until the last cell is done (kernel
        idle, no cell waiting with ``[*]``)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        t0 = time.monotonic()
        started = f"() => {{ const s = ({_STATE_JS})(); return s && s.prompts.some(p => /\\[[*0-9]/.test(p)); }}"
        for attempt in range(3):
            self.menu_entry("Run", "Run All Cells").click()
            try:   # started: some cell is queued or numbered
                self.page.wait_for_function(started, timeout=30_000, polling=250)
                break
            except PlaywrightTimeout:
                self.page.keyboard.press("Escape")
                if attempt == 2 or self.dialogs():
                    raise
        # done: the kernel idle and no cell queued, on two looks a second apart
        deadline, calm = t0 + timeout_s, 0
        while time.monotonic() < deadline:
            state = self.page.evaluate(_STATE_JS)
            done = state and state["status"] == "idle" and not any("*" in p for p in state["prompts"])
            calm = calm + 1 if done else 0
            if calm >= 2 or self.page.query_selector(".jp-Dialog"):
                return time.monotonic() - t0
            time.sleep(1.0)
        raise TimeoutError(f"Run All did not end within {timeout_s:.0f} s")

    def run_problems(self) -> list[str]:
        """What is wrong after Run All: a cell left unrun, an error other than an exercise stub's,
        TensorFlow's log lines, any other red (stderr) output, a dialog."""
        found = []
        prompts = self.page.evaluate(_STATE_JS)["prompts"]
        unrun = [i for i, p in enumerate(prompts) if not re.search(r"\[\d+\]", p)]
        if unrun:
            found.append(f"code cells {unrun} did not run (of {len(prompts)})")
        for out in self.page.evaluate(_OUTPUTS_JS):
            where, text = f"code cell {out['cell']}", out["text"].strip()
            if TF_LOG.search(text):
                found.append(f"{where}: TensorFlow/CUDA log lines in red: {text[:400]!r}")
            elif "error" in out["mime"] or "Traceback" in text or "Error" in text.split("\n")[0]:
                if not STUB_ERROR.search(text):
                    found.append(f"{where}: an error: {text[:1500]!r}")
            else:
                found.append(f"{where}: red (stderr) output: {text[:400]!r}")
        return found + self.dialogs()

    # -- evidence ---------------------------------------------------------------------------
    def screenshot(self, name: str) -> Path:
        """The whole notebook (the page made as tall as the notebook, up to 16,000 px)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        height = self.page.evaluate("""() => {
          const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
          return s ? s.scrollHeight : 0; }""")
        width = self.page.viewport_size["width"]
        if height:
            self.page.set_viewport_size({"width": width, "height": min(16_000, height + 200)})
            self.page.evaluate("""() => document.querySelectorAll(
              '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')
              .forEach(e => { e.scrollTop = 0; })""")
            time.sleep(1.5)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.page.set_viewport_size({"width": width, "height": 900})
        return path
