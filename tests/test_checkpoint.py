"""The checkpoint package (workshop/checkpoint/) and ./download_checkpoint.sh, end to end.

Small fake archives are packed in tmp_path and served by a local HTTP server on 127.0.0.1
(good, corrupted, truncated, 404, HTML, slow routes) plus a refused port for "no network".
After every failure the previous good checkpoint must be byte-for-byte and inode-for-inode
untouched, and no temporary directory may be left beside it nor anything in the temp folder.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from workshop import checkpoint as ck
from workshop.checkpoint import fetch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "download_checkpoint.sh"

V1 = {"classifier.weights.h5": b"\x89HDF classifier v1 " * 40,
      "backbone.keras": b"PK backbone v1 " * 30,
      "unet.weights.h5": b"\x89HDF unet v1 " * 25,
      "detector.weights.h5": b"\x89HDF detector v1 " * 20}
V2 = {k: v.replace(b"v1", b"v2") for k, v in V1.items()}
FIG1 = {"classifier": {"val_accuracy": 0.91}, "unet": {"val_iou": 0.8}}
FIG2 = {"classifier": {"val_accuracy": 0.95}, "unet": {"val_iou": 0.85}}
CREATED = "2025-01-02T03:04:05Z"


# --------------------------------------------------------------------------- helpers

def tmp_leftovers() -> set[str]:
    """What the checkpoint code could leave in the temp folder (it must leave nothing)."""
    return {str(p) for d in {Path("/tmp"), Path(tempfile.gettempdir())}
            for p in d.glob("workshop-checkpoint-*")}


@pytest.fixture(scope="module", autouse=True)
def nothing_left_in_tmp():
    """The whole module, scripts included, leaves nothing new in the temp folder."""
    before = tmp_leftovers()
    yield
    new = tmp_leftovers() - before
    assert not new, f"the checkpoint tests left {sorted(new)} in the temp folder"


def make_release(where: Path, files: dict, figures: dict, version: str) -> dict:
    """Pack ``files`` into where/workshop-checkpoint.tar.gz + where/MANIFEST.json."""
    src = where / f"src-{version}"
    src.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        (src / name).write_bytes(data)
        paths.append(src / name)
    return ck.pack(paths, where / ck.ARCHIVE_NAME, where / ck.MANIFEST_NAME, figures,
                   version=version, created=CREATED)


def snapshot(d: Path) -> dict:
    """Everything that must not change: each file's bytes, inode and mtime, and the dir's inode."""
    out = {".": os.stat(d).st_ino}
    for p in sorted(d.iterdir()):
        st = p.stat()
        out[p.name] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_ino, st.st_mtime_ns)
    return out


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.glob(f".{target.name}.*"))


def raw_targz(members) -> bytes:
    """A gzip tar from [(TarInfo, bytes or None)] — for hand-made (malicious) archives."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def inner_manifest_for(files: dict) -> bytes:
    members = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
               for n, b in files.items()}
    return json.dumps({"format": 1, "version": "evil", "created": CREATED,
                       "members": members, "figures": {}}).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            body = b"<html><body>404 Not Found</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        status, ctype, body, mode = route
        if mode == "slow":
            time.sleep(2.0)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that hangs up on purpose (a timeout, a refused answer) is expected."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.hits = {}, []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def refused_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                       # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/ckpt.tar.gz"


class Setup:
    pass


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Shipped v1 in tmp/ship, a v2 release in tmp/rel, the target tmp/work/checkpoints."""
    e = Setup()
    e.ship = tmp_path / "ship"
    e.man1 = make_release(e.ship, V1, FIG1, "1")
    e.rel = tmp_path / "rel"
    e.man2 = make_release(e.rel, V2, FIG2, "2")
    e.archive1 = (e.ship / ck.ARCHIVE_NAME).read_bytes()
    e.archive2 = (e.rel / ck.ARCHIVE_NAME).read_bytes()
    e.target = tmp_path / "work" / "checkpoints"
    e.tmp = tmp_path
    for var in ("WORKSHOP_CHECKPOINT_URL", "WORKSHOP_CHECKPOINT_SHA256", "http_proxy",
                "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_DIR", str(e.target))
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_MANIFEST", str(e.ship / ck.MANIFEST_NAME))
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_TIMEOUT", "5")
    e.messages = []
    e.say = e.messages.append
    return e


def install_v1(e) -> dict:
    res = ck.prepare(say=e.say)
    assert res.status == "installed", res.message
    assert ck.verify(e.target) == []
    return snapshot(e.target)


def serve_v2(srv, e):
    srv.routes["/v2.tar.gz"] = (200, "application/gzip", e.archive2, "ok")
    return srv.url + "/v2.tar.gz"


# --------------------------------------------------------------------------- pack / manifest

def test_pack_writes_archive_and_manifest(env):
    man, archive = env.man1, env.ship / ck.ARCHIVE_NAME
    assert man["format"] == 1 and man["version"] == "1" and man["created"] == CREATED
    assert man["archive"] == {"name": ck.ARCHIVE_NAME, "sha256": sha(env.archive1),
                              "size": len(env.archive1)}
    expected = {n: {"sha256": sha(b), "size": len(b)} for n, b in V1.items()}
    metrics = json.dumps(FIG1, indent=2, sort_keys=True).encode() + b"\n"
    expected["metrics.json"] = {"sha256": sha(metrics), "size": len(metrics)}
    assert man["members"] == expected
    assert man["figures"] == FIG1
    assert json.loads((env.ship / ck.MANIFEST_NAME).read_text()) == man
    with tarfile.open(archive) as tf:
        names = tf.getnames()
    assert sorted(names) == sorted([*V1, "metrics.json", "CHECKPOINT.json"])
    assert ck.build_manifest(archive) == man


def test_pack_is_reproducible_and_bounded(env, tmp_path):
    again = tmp_path / "again"
    make_release(again, V1, FIG1, "1")
    assert (again / ck.ARCHIVE_NAME).read_bytes() == env.archive1
    big = tmp_path / "big.weights.h5"
    big.write_bytes(os.urandom(4096))
    with pytest.raises(ck.CheckpointError, match="MB the repository may ship"):
        ck.pack([big], tmp_path / "big.tar.gz", tmp_path / "big.json", {}, max_bytes=1000)
    assert not (tmp_path / "big.tar.gz").exists() and not (tmp_path / "big.json").exists()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "big.weights.h5").write_bytes(b"x")
    with pytest.raises(ck.CheckpointError, match="share a base name"):
        ck.pack([big, tmp_path / "a" / "big.weights.h5"], tmp_path / "x.tar.gz",
                tmp_path / "x.json", {})


# --------------------------------------------------------------------------- shipped archive

def test_install_shipped_then_already_in_place(env):
    before = install_v1(env)
    assert ck.checkpoint_dir() == env.target
    assert ck.path("classifier") == env.target / "classifier.weights.h5"
    assert ck.path("backbone") == env.target / "backbone.keras"
    assert ck.path("unet.weights.h5").read_bytes() == V1["unet.weights.h5"]
    assert ck.figures() == FIG1
    assert ck.verify(env.target, manifest=env.man1) == []
    record = json.loads((env.target / ".installed.json").read_text())
    assert record["source"] == "shipped" and record["archive_sha256"] == sha(env.archive1)

    res = ck.prepare(say=env.say)
    assert res.status == "in-place" and "already in place" in res.message
    assert snapshot(env.target) == before
    assert leftovers(env.target) == []


def test_path_without_checkpoint_says_run_the_script(env):
    with pytest.raises(ck.CheckpointError, match=r"\./download_checkpoint\.sh"):
        ck.path("classifier")
    assert ck.verify(env.target) == [f"{env.target} does not exist"]
    install_v1(env)
    with pytest.raises(ck.CheckpointError, match="has no 'resnet'"):
        ck.path("resnet")


def test_damaged_checkpoint_is_reported_and_repaired(env):
    install_v1(env)
    ck.path("unet")                                   # verified and cached
    f = env.target / "unet.weights.h5"
    f.write_bytes(b"X" + f.read_bytes()[1:])          # same size, other bytes
    problems = ck.verify(env.target)
    assert len(problems) == 1 and "unet.weights.h5 has sha256" in problems[0]
    with pytest.raises(ck.CheckpointError, match=r"(?s)not ready.*unet.*download_checkpoint\.sh"):
        ck.path("classifier")
    (env.target / "detector.weights.h5").unlink()
    assert "detector.weights.h5 is missing" in ck.verify(env.target)
    res = ck.prepare(say=env.say)
    assert res.status == "installed"
    assert ck.verify(env.target) == [] and ck.path("unet").read_bytes() == V1["unet.weights.h5"]


def test_shipped_archive_checksum_mismatch(env):
    archive = env.ship / ck.ARCHIVE_NAME
    archive.write_bytes(env.archive1[:-1] + bytes([env.archive1[-1] ^ 1]))
    with pytest.raises(ck.CheckpointError, match="sha256 mismatch for the shipped"):
        ck.prepare(say=env.say)
    assert not env.target.exists() and leftovers(env.target) == []

    archive.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(ck.CheckpointError, match="git lfs pull"):
        ck.prepare(say=env.say)
    assert not env.target.exists()


def test_shipped_archive_broken_keeps_previous_good(env):
    before = install_v1(env)
    make_release(env.ship, V2, FIG2, "2")             # the repository now ships v2 ...
    archive = env.ship / ck.ARCHIVE_NAME
    archive.write_bytes(archive.read_bytes()[:100])   # ... but its archive is damaged
    res = ck.prepare(say=env.say)
    assert res.status == "kept" and res.warning and "sha256 mismatch" in res.message
    assert snapshot(env.target) == before
    with pytest.raises(ck.CheckpointError, match="untouched"):
        ck.prepare(strict=True, say=env.say)
    archive.unlink()
    res = ck.prepare(say=env.say)
    assert res.status == "kept" and "missing" in res.message
    assert snapshot(env.target) == before and leftovers(env.target) == []


def test_new_shipped_version_replaces_old_one(env):
    install_v1(env)
    make_release(env.ship, V2, FIG2, "2")
    res = ck.prepare(say=env.say)
    assert res.status == "installed", res.message
    assert ck.path("classifier").read_bytes() == V2["classifier.weights.h5"]
    assert ck.figures() == FIG2
    assert any("not the one the repository now ships" in m for m in env.messages)


def test_nothing_shipped(env, monkeypatch):
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_MANIFEST", str(env.tmp / "none" / "MANIFEST.json"))
    with pytest.raises(ck.NothingShipped, match="No checkpoint is shipped"):
        ck.prepare(say=env.say)
    res = ck.prepare(if_available=True, say=env.say)
    assert res.status == "unavailable" and "--if-available" in res.message
    assert not env.target.exists()


def test_interrupted_swap_is_recovered(env):
    before = install_v1(env)
    moved = env.target.parent / f".{env.target.name}.old-crash"
    os.rename(env.target, moved)                      # as if killed between the two renames
    (env.target.parent / f".{env.target.name}.tmp-crash").mkdir()
    res = ck.prepare(say=env.say)
    assert res.status == "in-place"
    assert snapshot(env.target) == before
    assert leftovers(env.target) == []


# --------------------------------------------------------------------------- releases by URL

def test_url_release_with_sha_then_in_place(env, server, monkeypatch):
    install_v1(env)
    url = serve_v2(server, env)
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_SHA256", sha(env.archive2))
    res = ck.prepare(url=url, say=env.say)
    assert res.status == "installed" and "WORKSHOP_CHECKPOINT_SHA256" in res.message
    assert ck.path("detector").read_bytes() == V2["detector.weights.h5"]
    assert json.loads((env.target / ".installed.json").read_text())["source"] == url
    after = snapshot(env.target)

    server.hits.clear()
    res = ck.prepare(url=url, say=env.say)            # same release: no download
    assert res.status == "in-place" and "already in place" in res.message
    assert "/v2.tar.gz" not in server.hits and snapshot(env.target) == after

    res = ck.prepare(url="", say=env.say)             # no URL: keep the newer release
    assert res.status == "in-place" and "--force" in res.message
    assert snapshot(env.target) == after
    res = ck.prepare(url="", force=True, say=env.say)
    assert res.status == "installed"
    assert ck.path("detector").read_bytes() == V1["detector.weights.h5"]


def test_url_from_environment_with_env_sha(env, server, monkeypatch):
    url = serve_v2(server, env)
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_URL", url)
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_SHA256", sha(env.archive2).upper())
    res = ck.prepare(say=env.say)
    assert res.status == "installed" and "WORKSHOP_CHECKPOINT_SHA256" in res.message
    assert ck.figures() == FIG2
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_SHA256", "abc")
    with pytest.raises(ck.CheckpointError, match="64 hex digits"):
        ck.prepare(strict=True, say=env.say)


def test_url_mirror_checked_against_manifest(env, server):
    server.routes["/mirror.tar.gz"] = (200, "application/octet-stream", env.archive1, "ok")
    res = ck.prepare(url=server.url + "/mirror.tar.gz", say=env.say)
    assert res.status == "installed" and "MANIFEST.json" in res.message
    assert server.hits == ["/mirror.tar.gz"]


def test_url_newer_release_without_sha_is_refused(env, server, monkeypatch):
    url = serve_v2(server, env)
    with pytest.raises(ck.CheckpointError, match="sha256 mismatch.*newer release"):
        ck.prepare(url=url, say=env.say)              # manifest fallback: v1's sum
    assert not env.target.exists()
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_MANIFEST", str(env.tmp / "none.json"))
    server.hits.clear()
    with pytest.raises(ck.CheckpointError, match="cannot verify.*WORKSHOP_CHECKPOINT_SHA256"):
        ck.prepare(url=url, say=env.say)
    assert "/v2.tar.gz" not in server.hits and not env.target.exists()


def test_bad_input_is_named(env, monkeypatch):
    before = install_v1(env)
    res = ck.prepare(url=str(env.ship / ck.ARCHIVE_NAME), say=env.say)
    assert res.status == "kept" and "not an http(s):// or file:// URL" in res.message
    assert "--archive" in res.message
    res = ck.prepare(archive=env.tmp / "nowhere.tar.gz", say=env.say)
    assert res.status == "kept" and "does not exist" in res.message
    with pytest.raises(ck.CheckpointError, match="a URL or a local archive, not both"):
        ck.prepare(url="http://x/y.tar.gz", archive=env.tmp / "y.tar.gz", say=env.say)
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_TIMEOUT", "soon")
    res = ck.prepare(url="http://127.0.0.1:9/x.tar.gz", say=env.say)
    assert res.status == "kept" and "WORKSHOP_CHECKPOINT_TIMEOUT='soon'" in res.message
    assert snapshot(env.target) == before and leftovers(env.target) == []


def test_python_without_extraction_filters_is_named(env, monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(ck.CheckpointError, match="extraction filters.*set PYTHON"):
        ck.prepare(say=env.say)
    assert not env.target.exists() and leftovers(env.target) == []


def test_file_url_release(env, monkeypatch):
    archive = env.rel / ck.ARCHIVE_NAME
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_SHA256", sha(env.archive2))
    res = ck.prepare(url=archive.as_uri(), say=env.say)
    assert res.status == "installed" and ck.figures() == FIG2


FAILURES = {
    # name: (route or special, expected words in the message)
    "corrupt": ("corrupt", "sha256 mismatch"),
    "truncated": ("truncate", "truncated"),
    "404": ("404", "HTTP 404"),
    "html": ("html", "HTML page"),
    "html-as-octet-stream": ("html-octet", "HTML page"),
    "refused": ("refused", "refused the connection"),
    "timeout": ("slow", "timeout"),
    "dns": ("dns", "DNS failure"),
}


def failing_url(kind, env, server, monkeypatch) -> str:
    """A URL that fails as ``kind``; WORKSHOP_CHECKPOINT_SHA256 is v2's true sum."""
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_SHA256", sha(env.archive2))
    good = env.archive2
    if kind == "corrupt":
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        server.routes["/x.tar.gz"] = (200, "application/gzip", bytes(bad), "ok")
    elif kind == "truncate":
        server.routes["/x.tar.gz"] = (200, "application/gzip", good, "truncate")
    elif kind == "404":
        pass                                          # unknown route: 404
    elif kind == "html":
        server.routes["/x.tar.gz"] = (200, "text/html; charset=utf-8",
                                      b"<!DOCTYPE html><html>Sign in</html>", "ok")
    elif kind == "html-octet":
        server.routes["/x.tar.gz"] = (200, "application/octet-stream",
                                      b"<!DOCTYPE html><html>Sign in</html>", "ok")
    elif kind == "slow":
        monkeypatch.setenv("WORKSHOP_CHECKPOINT_TIMEOUT", "0.5")
        server.routes["/x.tar.gz"] = (200, "application/gzip", good, "slow")
    elif kind == "refused":
        return refused_url()
    elif kind == "dns":
        def no_dns(*args, **kwargs):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        monkeypatch.setattr(socket, "getaddrinfo", no_dns)
        return "http://checkpoints.example.invalid/x.tar.gz"
    return server.url + "/x.tar.gz"


@pytest.mark.parametrize("kind", list(FAILURES))
def test_failed_download_keeps_previous_good(kind, env, server, monkeypatch):
    before = install_v1(env)
    route, words = FAILURES[kind]
    url = failing_url(route, env, server, monkeypatch)
    res = ck.prepare(url=url, say=env.say)
    assert res.status == "kept" and res.warning, res.message
    assert words in res.message and "Keeping the checkpoint" in res.message
    assert snapshot(env.target) == before
    assert leftovers(env.target) == []
    with pytest.raises(ck.CheckpointError, match=words):
        ck.prepare(url=url, strict=True, say=env.say)
    assert snapshot(env.target) == before and leftovers(env.target) == []


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "404", "html", "refused", "dns"])
def test_failed_download_without_previous_is_an_error(kind, env, server, monkeypatch):
    route, words = FAILURES[kind]
    url = failing_url(route, env, server, monkeypatch)
    with pytest.raises(ck.CheckpointError, match=words) as info:
        ck.prepare(url=url, say=env.say)
    assert "No usable checkpoint" in str(info.value)
    assert not env.target.exists() and leftovers(env.target) == []


def test_one_install_at_a_time(env):
    """prepare waits for the lock on the target's folder; the lock leaves no file."""
    env.target.parent.mkdir(parents=True)
    results = []
    with fetch._lock(env.target):
        t = threading.Thread(target=lambda: results.append(ck.prepare(say=env.say)))
        t.start()
        t.join(0.5)
        assert t.is_alive() and not env.target.exists()
    t.join(30)
    assert results[0].status == "installed"
    assert sorted(p.name for p in env.target.parent.iterdir()) == [env.target.name]


# --------------------------------------------------------------------------- hostile archives

def _local_release(tmp_path: Path, data: bytes, monkeypatch, name="rel.tar.gz") -> Path:
    """A release file, with its sha256 in WORKSHOP_CHECKPOINT_SHA256."""
    p = tmp_path / name
    p.write_bytes(data)
    monkeypatch.setenv("WORKSHOP_CHECKPOINT_SHA256", sha(data))
    return p


def _file(name, mode=0o644):
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _symlink(name, to):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, to
    return info


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


TOP_LEVEL = "not a regular file at the top level"
HOSTILE = {
    # refused by tarfile's "data" filter: nothing may land outside the folder
    "dotdot": ([(_file("../evil"), b"x")], "outside the destination"),
    "dotdot-deep": ([(_file("a/../../evil"), b"x")], "outside the destination"),
    "symlink-out": ([(_symlink("classifier.weights.h5", "/etc/passwd"), None)],
                    "link to an absolute path"),
    "symlink-up": ([(_symlink("classifier.weights.h5", "../../evil"), None)],
                   "outside the destination"),
    "hardlink-out": ([(_special("a.h5", tarfile.LNKTYPE, "/etc/passwd"), None)],
                     "link to an absolute path"),
    "device": ([(_special("tty", tarfile.CHRTYPE), None)], "special file"),
    "fifo": ([(_special("pipe", tarfile.FIFOTYPE), None)], "special file"),
    # made harmless by the filter, refused by the course's rule: flat, regular files only
    "absolute": ([(_file("/tmp/evil-abs"), b"x")], TOP_LEVEL),
    "subdir": ([(_file("sub/evil"), b"x")], TOP_LEVEL),
    "symlink-inside": ([(_file("b.h5"), b"1"), (_symlink("a.h5", "b.h5"), None)], TOP_LEVEL),
    "record": ([(_file(".installed.json"), b"{}")], TOP_LEVEL),
    # extracted, then refused by the member check
    "duplicate": ([(_file("a.h5"), b"1"), (_file("a.h5"), b"2")], "different a.h5"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_archive_members_are_rejected(kind, env, monkeypatch):
    before = install_v1(env)
    members, words = HOSTILE[kind]
    inner = (_file("CHECKPOINT.json"), inner_manifest_for({"a.h5": b"1"}))
    archive = _local_release(env.tmp, raw_targz([inner, *members]), monkeypatch)
    with pytest.raises(ck.CheckpointError, match=words):
        ck.prepare(archive=archive, strict=True, say=env.say)
    assert snapshot(env.target) == before and leftovers(env.target) == []
    assert not (env.tmp / "evil").exists() and not (env.target.parent / "evil").exists()
    assert not Path("/tmp/evil-abs").exists()


def test_unpacked_size_is_bounded(env, monkeypatch):
    monkeypatch.setattr(ck.manifest, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ck.CheckpointError, match="unpacks to more than"):
        ck.prepare(say=env.say)
    assert not env.target.exists() and leftovers(env.target) == []


def test_archive_made_with_tar_is_accepted(env, monkeypatch):
    """`tar czf x.tar.gz -C dir .` writes a "./" entry and "./name" members: both are fine."""
    files = {"a.weights.h5": b"aaaa", "metrics.json": b"{}"}
    members = [(_file(f"./{n}"), b) for n, b in files.items()]
    archive = _local_release(env.tmp, raw_targz(
        [(_special("./", tarfile.DIRTYPE), None),
         (_file("./CHECKPOINT.json"), inner_manifest_for(files)), *members]), monkeypatch)
    res = ck.prepare(archive=archive, say=env.say)
    assert res.status == "installed", res.message
    assert sorted(p.name for p in env.target.iterdir()) == [
        ".installed.json", "CHECKPOINT.json", "a.weights.h5", "metrics.json"]


def test_archive_members_must_match_its_manifest(env, monkeypatch):
    before = install_v1(env)
    files = {"a.weights.h5": b"aaaa", "b.weights.h5": b"bbbb"}
    lying = inner_manifest_for({"a.weights.h5": b"AAAA", "b.weights.h5": b"bbbb"})
    archive = _local_release(env.tmp, raw_targz(
        [(_file("CHECKPOINT.json"), lying)] + [(_file(n), b) for n, b in files.items()]),
        monkeypatch)
    res = ck.prepare(archive=archive, say=env.say)
    assert res.status == "kept" and "do not match its CHECKPOINT.json" in res.message
    assert "different a.weights.h5" in res.message
    assert snapshot(env.target) == before

    bare = _local_release(env.tmp, raw_targz([(_file(n), b) for n, b in files.items()]),
                          monkeypatch, name="bare.tar.gz")
    res = ck.prepare(archive=bare, say=env.say)
    assert res.status == "kept" and "not a course checkpoint archive" in res.message
    assert snapshot(env.target) == before


def test_truncated_archive_with_matching_sum_is_rejected(env, monkeypatch):
    before = install_v1(env)
    archive = _local_release(env.tmp, env.archive2[: len(env.archive2) * 2 // 3], monkeypatch)
    res = ck.prepare(archive=archive, say=env.say)
    assert res.status == "kept" and "truncated or corrupt" in res.message
    assert snapshot(env.target) == before and leftovers(env.target) == []


def test_local_release_archive(env, monkeypatch):
    archive = _local_release(env.tmp, env.archive2, monkeypatch)
    res = ck.prepare(archive=archive, say=env.say)
    assert res.status == "installed" and ck.figures() == FIG2
    assert ck.prepare(archive=archive, say=env.say).status == "in-place"


# --------------------------------------------------------------------------- the shell script

def run_script(e, *args, extra_env=None, timeout=60):
    envv = {k: v for k, v in os.environ.items()
            if not k.startswith("WORKSHOP_") and "proxy" not in k.lower()}
    envv.update(PYTHON=sys.executable, no_proxy="*", WORKSHOP_CHECKPOINT_DIR=str(e.target),
                WORKSHOP_CHECKPOINT_MANIFEST=str(e.ship / ck.MANIFEST_NAME),
                WORKSHOP_CHECKPOINT_TIMEOUT="5")
    envv.update(extra_env or {})
    return subprocess.run(check=False, args=["bash", str(SCRIPT), *args], env=envv, capture_output=True,
                          text=True, timeout=timeout, cwd=e.tmp)


def test_script_is_executable_bash():
    assert os.access(SCRIPT, os.X_OK), "download_checkpoint.sh must be executable"
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    r = subprocess.run(check=False, args=["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_script_installs_then_says_already_in_place(env):
    r = run_script(env)
    assert r.returncode == 0, r.stderr
    assert "Installed checkpoint version 1" in r.stdout
    before = snapshot(env.target)
    r = run_script(env)
    assert r.returncode == 0, r.stderr
    assert "already in place" in r.stdout
    assert snapshot(env.target) == before
    r = run_script(env, "--verify")
    assert r.returncode == 0 and "verifies" in r.stdout
    (env.target / "metrics.json").write_text("{}")
    r = run_script(env, "--verify")
    assert r.returncode == 1 and "metrics.json has" in r.stderr


def test_script_nothing_shipped(env):
    none = {"WORKSHOP_CHECKPOINT_MANIFEST": str(env.tmp / "none" / "MANIFEST.json")}
    r = run_script(env, extra_env=none)
    assert r.returncode == 1
    assert "No checkpoint is shipped" in r.stderr and "--build" in r.stderr
    r = run_script(env, "--if-available", extra_env=none)
    assert r.returncode == 0, r.stderr
    assert "Note: No checkpoint is shipped" in r.stdout
    assert not env.target.exists()


def test_script_failed_download_keeps_previous(env, server):
    assert run_script(env).returncode == 0
    before = snapshot(env.target)
    url = {"WORKSHOP_CHECKPOINT_URL": server.url + "/missing.tar.gz",
           "WORKSHOP_CHECKPOINT_SHA256": sha(env.archive2)}
    r = run_script(env, extra_env=url)
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stderr and "HTTP 404" in r.stderr and "Keeping" in r.stderr
    assert snapshot(env.target) == before
    r = run_script(env, "--strict", extra_env=url)
    assert r.returncode == 1 and "untouched" in r.stderr
    assert snapshot(env.target) == before and leftovers(env.target) == []


def test_script_bad_download_without_previous_fails(env, server):
    server.routes["/x.tar.gz"] = (200, "text/html", b"<html>login</html>", "ok")
    r = run_script(env, "--url", server.url + "/x.tar.gz",
                   extra_env={"WORKSHOP_CHECKPOINT_SHA256": sha(env.archive2)})
    assert r.returncode == 1
    assert "HTML page" in r.stderr and "No usable checkpoint" in r.stderr
    assert not env.target.exists() and leftovers(env.target) == []


def test_script_downloads_release(env, server):
    release = {"WORKSHOP_CHECKPOINT_URL": serve_v2(server, env),
               "WORKSHOP_CHECKPOINT_SHA256": sha(env.archive2)}
    r = run_script(env, extra_env=release)
    assert r.returncode == 0, r.stderr
    assert "Installed checkpoint version 2" in r.stdout
    assert ck.verify(env.target) == []
    assert (env.target / "unet.weights.h5").read_bytes() == V2["unet.weights.h5"]
    before = snapshot(env.target)
    r = run_script(env, extra_env=release)
    assert r.returncode == 0 and "already in place" in r.stdout
    assert snapshot(env.target) == before


def test_script_help():
    r = subprocess.run(check=False, args=["bash", str(SCRIPT), "--help"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHON=sys.executable), timeout=60)
    assert r.returncode == 0, r.stderr
    for word in ("--if-available", "--build", "--strict", "WORKSHOP_CHECKPOINT_URL",
                 "WORKSHOP_CHECKPOINT_SHA256", "Exit status"):
        assert word in r.stdout
    r = subprocess.run(check=False, args=["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHON=sys.executable), timeout=60)
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr


def test_script_uses_python_from_env(env, tmp_path):
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/sh\necho "fake python: $*"\n')
    fake.chmod(0o755)
    r = run_script(env, "--force", "a b", extra_env={"PYTHON": str(fake)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "fake python: -m workshop.checkpoint --force a b"


FAKE_TRAINER = '''
import argparse, json, pathlib, sys
p = argparse.ArgumentParser()
p.add_argument("what")
p.add_argument("--out", required=True)
a = p.parse_args()
if {fail!r}:
    sys.exit("boom: training diverged")
out = pathlib.Path(a.out)
for m in ("classifier", "backbone", "unet", "detector_rpn", "detector_head"):
    (out / (m + ".weights.h5")).write_bytes(("trained " + m).encode() * 10)
(out / "unet.best.weights.h5").write_bytes(b"leftover")
(out / "events.log").write_text("not packed")
(out / "metrics.json").write_text(json.dumps({{"classifier": {{"val_accuracy": 0.5}}}}))
'''


def test_script_build(env, tmp_path):
    ship = tmp_path / "newship"
    common = {"WORKSHOP_CHECKPOINT_MANIFEST": str(ship / ck.MANIFEST_NAME),
              "WORKSHOP_TRAIN_DIR": str(tmp_path / "train-out")}
    r = run_script(env, "--build", extra_env=dict(common, WORKSHOP_TRAIN_MODULE="no_such_trainer"))
    assert r.returncode == 1 and "there is no module no_such_trainer" in r.stderr
    assert not ship.exists()

    trainers = tmp_path / "trainers"
    trainers.mkdir()
    (trainers / "good_trainer.py").write_text(FAKE_TRAINER.format(fail=False))
    (trainers / "bad_trainer.py").write_text(FAKE_TRAINER.format(fail=True))
    common["PYTHONPATH"] = str(trainers)
    r = run_script(env, "--build", extra_env=dict(common, WORKSHOP_TRAIN_MODULE="bad_trainer"))
    assert r.returncode == 1 and "training failed" in r.stderr and "boom" in r.stderr
    assert not (ship / ck.MANIFEST_NAME).exists()

    r = run_script(env, "--build", extra_env=dict(common, WORKSHOP_TRAIN_MODULE="good_trainer"))
    assert r.returncode == 0, r.stderr
    man = json.loads((ship / ck.MANIFEST_NAME).read_text())
    assert man["archive"]["sha256"] == sha((ship / ck.ARCHIVE_NAME).read_bytes())
    assert sorted(man["members"]) == sorted(
        [f"{m}.weights.h5" for m in ("classifier", "backbone", "unet", "detector_rpn",
                                     "detector_head")] + ["metrics.json"])
    assert man["figures"] == {"classifier": {"val_accuracy": 0.5}}
    assert ck.verify(env.target, manifest=man) == []
    assert (env.target / "unet.weights.h5").read_bytes() == b"trained unet" * 10
    assert ck.ready_dir() == env.target
    assert ck.ready_dir(env.target) == env.target

    incomplete = FAKE_TRAINER.format(fail=False).replace('"unet", ', "")
    (trainers / "incomplete_trainer.py").write_text(incomplete)
    r = run_script(env, "--build",
                   extra_env=dict(common, WORKSHOP_TRAIN_MODULE="incomplete_trainer"))
    assert r.returncode == 1 and "wrote no weights for unet" in r.stderr
    assert json.loads((ship / ck.MANIFEST_NAME).read_text()) == man


# --------------------------------------------------------------------------- optional ImageNet

def test_with_imagenet_caches_from_local_server(env, server, tmp_path):
    weights = b"\x89HDF\r\n\x1a\n" + b"\0" * 100
    server.routes["/mnv2.h5"] = (200, "application/octet-stream", weights, "ok")
    server.routes["/page.h5"] = (200, "text/html", b"<html></html>", "ok")
    keras_home = tmp_path / "keras"
    none = str(env.tmp / "none" / "MANIFEST.json")
    base = {"KERAS_HOME": str(keras_home), "WORKSHOP_CHECKPOINT_MANIFEST": none}
    r = run_script(env, "--if-available", "--with-imagenet",
                   extra_env=dict(base, WORKSHOP_IMAGENET_URL=server.url + "/page.h5"))
    assert r.returncode == 0 and "not cached (optional)" in r.stderr
    assert not (keras_home / "models" / ck.IMAGENET_FILE).exists()
    r = run_script(env, "--if-available", "--with-imagenet",
                   extra_env=dict(base, WORKSHOP_IMAGENET_URL=server.url + "/mnv2.h5"))
    assert r.returncode == 0, r.stderr
    assert (keras_home / "models" / ck.IMAGENET_FILE).read_bytes() == weights
    r = run_script(env, "--if-available", "--with-imagenet",
                   extra_env=dict(base, WORKSHOP_IMAGENET_URL=refused_url()))
    assert r.returncode == 0 and "already cached" in r.stdout
