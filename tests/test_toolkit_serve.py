"""``python -m workshop serve`` on 127.0.0.1: the page, the health check, predictions from a
multipart upload and from a raw body, and every kind of bad input answered with a 4xx and a
JSON message (an oversized upload refused on its Content-Length before it is sent, and while
streaming when it has none), with the server still answering a good request after each."""

import http.client
import io
import json
import socket
import uuid

import pytest
from toolkit_support import PHOTO, Server, write_scene

LIMIT_MB = 1          # --max-upload-mb
LIMIT_MP = 1          # --max-megapixels
CLASSES = ["circle", "square", "triangle", "cross", "ring"]


# the module shares one server: its tests on one xdist worker
pytestmark = pytest.mark.xdist_group("toolkit_serve")

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    served = Server(d / "serve.log", "--max-upload-mb", str(LIMIT_MB), "--max-megapixels", str(LIMIT_MP),
                    "--min-score", "0.05")
    try:
        yield served
    finally:
        served.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    return path, write_scene(path)


def request(server, method, path, body=None, headers=None, timeout=60):
    """``(status, parsed JSON or text, headers)``."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        kind = resp.getheader("content-type", "")
        return resp.status, (json.loads(raw) if "json" in kind else raw.decode()), resp
    finally:
        conn.close()


def multipart(field, filename, data, content_type="image/png"):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def assert_detects(server, scene):
    path, sc = scene
    body, headers = multipart("image", "scene.png", path.read_bytes())
    status, answer, _ = request(server, "POST", "/api/predict", body, headers)
    assert status == 200, answer
    assert answer["image"] == {"width": 160, "height": 160}
    dets = answer["detections"]
    assert dets and set(dets[0]) >= {"box", "score", "class"}
    for d in dets:
        x1, y1, x2, y2 = d["box"]                                  # xyxy, pixels of the upload
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 160 and d["class"] in CLASSES
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    confident = {d["class"] for d in dets if d["score"] > 0.5}
    from workshop.data.synthetic import CLASS_NAMES

    assert {CLASS_NAMES[c] for c in sc.classes} <= confident
    return answer


def test_page_and_health(server):
    status, page, resp = request(server, "GET", "/")
    assert status == 200 and resp.getheader("content-type").startswith("text/html")
    assert 'type="file"' in page and "api/predict" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'const SVG = "http://www.w3.org/2000/svg"', "")                      # nothing from a CDN
    status, health, _ = request(server, "GET", "/api/health")
    assert status == 200 and health["status"] == "ok"
    assert health["classes"] == CLASSES
    assert set(health["stages"].values()) == {"the reference"}
    assert health["max_upload_mb"] == LIMIT_MB


def test_predict_multipart_and_raw_body(server, scene):
    via_form = assert_detects(server, scene)
    status, raw, _ = request(server, "POST", "/api/predict", scene[0].read_bytes(), {"Content-Type": "image/png"})
    assert status == 200 and raw["detections"] == via_form["detections"]
    status, photo, _ = request(server, "POST", "/api/predict", PHOTO.read_bytes(),
                               {"Content-Type": "application/octet-stream"})
    assert status == 200 and photo["image"] == {"width": 320, "height": 213}
    status, strict, _ = request(server, "POST", "/api/predict?min_score=0.9", scene[0].read_bytes(),
                                {"Content-Type": "image/png"})
    assert status == 200 and strict["detections"] and all(d["score"] > 0.9 for d in strict["detections"])


def _big_png(width, height) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")      # all black: a few KB on disk
    return buf.getvalue()


BAD = {
    "not an image": (b"this is not an image", {"Content-Type": "image/jpeg"}, 422, "not an image"),
    "empty body": (b"", {"Content-Type": "image/png"}, 400, "empty body"),
    "wrong content type": (b"{}", {"Content-Type": "application/json"}, 415, "is not an image"),
    "text form field": (*multipart("other", "x.png", b"abc"), 400, "no field 'image'"),
    "bad min_score": (b"x", {"Content-Type": "image/png"}, 422, "min_score"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_a_4xx_and_the_server_goes_on(server, scene, case):
    body, headers, expected, words = BAD[case]
    path = "/api/predict?min_score=2" if case == "bad min_score" else "/api/predict"
    status, answer, _ = request(server, "POST", path, body, headers)
    assert status == expected and words in answer["error"], answer
    assert_detects(server, scene)


def test_an_image_too_large_by_pixel_count(server, scene):
    data = _big_png(1500, 1000)                       # 1.5 MP, a small file
    assert len(data) < LIMIT_MB * 1e6
    status, answer, _ = request(server, "POST", "/api/predict", data, {"Content-Type": "image/png"})
    assert status == 422 and "1.5 megapixels" in answer["error"] and "limit is 1 megapixels" in answer["error"]
    assert_detects(server, scene)


def test_an_oversized_upload_is_refused_on_its_content_length(server, scene):
    """Only the headers are sent: the answer comes before any of the body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/api/predict")
        conn.putheader("Content-Type", "image/png")
        conn.putheader("Content-Length", str(50 * 10**6))
        conn.endheaders()
        resp = conn.getresponse()
        answer = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 413 and "50 MB" in answer["error"] and "limit is 1 MB" in answer["error"]
    assert_detects(server, scene)


@pytest.mark.parametrize("form", [False, True], ids=["raw", "multipart"])
def test_an_oversized_upload_is_refused_while_streaming(server, scene, form):
    """No Content-Length (chunked): the server counts the bytes and answers once they pass the
    limit, while the client still has more to send."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        boundary = "b0undary"
        kind = f"multipart/form-data; boundary={boundary}" if form else "image/png"
        s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        if form:
            head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                    "Content-Type: image/png\r\n\r\n").encode()
            s.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        chunk = b"\0" * 65536
        for _ in range(int(LIMIT_MB * 1e6 / len(chunk)) + 2):     # just past the limit, then stop
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            part = s.recv(65536)
            if not part:
                break
            reply += part
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:300]
    assert "limit is 1 MB" in json.loads(body)["error"]
    assert server.alive()
    assert_detects(server, scene)


def test_unknown_paths_and_methods_get_json(server):
    status, answer, _ = request(server, "GET", "/nowhere")
    assert status == 404 and answer["error"]
    status, answer, _ = request(server, "GET", "/api/predict")
    assert status == 405 and answer["error"]
