"""A small client of a JupyterHub, for the tests: log in through the login form, start a
server through the REST API, run code in a kernel through its websocket."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import requests


class HubUser:
    def __init__(self, base: str, name: str, password: str):
        self.base, self.name = base.rstrip("/"), name
        self.session = requests.Session()
        self.token = ""
        self.login(password)

    def login(self, password: str) -> None:
        page = self.session.get(f"{self.base}/hub/login", timeout=30)
        xsrf = self.session.cookies.get("_xsrf") or re.search(
            r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        reply = self.session.post(f"{self.base}/hub/login?next=", timeout=60, data={
            "username": self.name, "password": password, "_xsrf": xsrf}, allow_redirects=False)
        if reply.status_code not in (302, 303):
            raise PermissionError(f"{self.name}: login refused ({reply.status_code})")
        self._xsrf = self.session.cookies.get("_xsrf", path="/hub/") or xsrf
        made = self.session.post(f"{self.base}/hub/api/users/{self.name}/tokens",
                                 headers={"X-XSRFToken": self._xsrf}, json={"note": "tests"},
                                 timeout=30)
        made.raise_for_status()
        self.token = made.json()["token"]

    @property
    def auth(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.base}/hub/api{path}", headers=self.auth,
                                timeout=60, **kw)

    def start(self, timeout: float = 300) -> float:
        """Start this user's server; seconds until it answers."""
        t0 = time.monotonic()
        reply = self.api("POST", f"/users/{self.name}/server")
        if reply.status_code not in (201, 202, 400):   # 400: already running
            raise RuntimeError(f"{self.name}: spawn refused: {reply.status_code} {reply.text}")
        while time.monotonic() - t0 < timeout:
            user = self.api("GET", f"/users/{self.name}").json()
            server = (user.get("servers") or {}).get("")
            if server and server.get("ready"):
                return time.monotonic() - t0
            time.sleep(0.5)
        raise TimeoutError(f"{self.name}: server not ready after {timeout:.0f} s")

    def stop(self) -> None:
        self.api("DELETE", f"/users/{self.name}/server")

    def server(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.base}/user/{self.name}{path}", headers=self.auth,
                                timeout=60, **kw)

    def run(self, code: str, timeout: float = 300) -> str:
        """Run ``code`` in a new kernel of this user's server; its output (stdout and errors)."""
        kernel = self.server("POST", "/api/kernels", json={"name": "python3"})
        kernel.raise_for_status()
        kid = kernel.json()["id"]
        try:
            return asyncio.run(self._execute(kid, code, timeout))
        finally:
            self.server("DELETE", f"/api/kernels/{kid}")

    async def _execute(self, kid: str, code: str, timeout: float) -> str:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = self.base.replace("http", "ws", 1) + f"/user/{self.name}/api/kernels/{kid}/channels"
        ws = await websocket_connect(HTTPRequest(url, headers=self.auth, connect_timeout=180,
                                                 request_timeout=180))
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": self.name,
                       "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False}}))
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), timeout=deadline - time.monotonic())
            if raw is None:
                break
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                out.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                break
        ws.close()
        return "".join(out)
