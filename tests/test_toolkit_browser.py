"""The page of ``python -m workshop serve`` in a real browser (Playwright driving the system's
Chromium at /usr/bin/chromium, never a downloaded one): upload an image through the file input,
wait for the boxes, check what is drawn and listed, and that the page asks nothing of any other
host (it must work offline). The screenshot goes to test-artifacts/toolkit/ (git-ignored)."""

import os

import pytest
from conftest import require
from toolkit_support import ARTIFACTS, Server, write_scene

CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("toolkit_browser")]


def require_browser() -> None:
    require(os.access(CHROMIUM, os.X_OK), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "Playwright for Python (pip install -r requirements-deploy.txt)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    served = Server(tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield served
    finally:
        served.close()


def test_upload_an_image_and_see_its_boxes(server, tmp_path):
    from playwright.sync_api import sync_playwright

    from workshop.data.synthetic import CLASS_NAMES

    scene = write_scene(tmp_path / "scene.png", seed=5, size=256)
    expected = {CLASS_NAMES[c] for c in scene.classes}
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args + ["--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1100})
            problems, elsewhere = [], []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: elsewhere.append(r.url)
                    if not r.url.startswith((server.origin, "blob:", "data:")) else None)
            page.goto(server.origin + "/", timeout=30_000)
            page.wait_for_function("document.getElementById('classes').textContent.includes('circle')",
                                   timeout=30_000)
            page.set_input_files("#file", str(tmp_path / "scene.png"))
            page.wait_for_function("Number(document.getElementById('overlay').dataset.drawn) > 0", timeout=60_000)

            assert page.locator("#view").is_visible()
            drawn = page.locator("#overlay g.detection")
            assert drawn.count() >= len(scene.boxes)
            assert page.locator("#overlay rect.box").count() == drawn.count()
            labels = page.locator("#overlay text").all_text_contents()
            assert expected <= {label.split()[0] for label in labels}
            assert all(float(label.split()[1]) >= 0.3 for label in labels)      # the slider's default
            rows = page.locator("#table tbody tr")
            assert rows.count() == drawn.count()
            assert "detection" in page.locator("#status").text_content()
            # the boxes sit on the image: the overlay covers it exactly
            photo, overlay = page.locator("#photo").bounding_box(), page.locator("#overlay").bounding_box()
            assert abs(photo["width"] - overlay["width"]) < 1 and abs(photo["height"] - overlay["height"]) < 1
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "serve_page.png"
            page.screenshot(path=str(shot), full_page=True)

            # a file that is not an image: the page says so, in words
            (tmp_path / "notes.png").write_text("not an image")
            page.set_input_files("#file", str(tmp_path / "notes.png"))
            page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30_000)
            assert "not an image" in page.locator("#status").text_content()
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert not elsewhere, f"the page asked other hosts for {elsewhere}"
    # the one console error allowed: the browser's own line for the refused upload (422)
    assert all("422" in p for p in problems), problems
