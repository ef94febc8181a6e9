"""A real ``cartreg serve`` process on a free loopback port, and a small HTTP client for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

from cartreg.portal.sessions import SESSION_COOKIE
from tests.portal.helpers import PASSWORD, csrf_of


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    registry: Path, log: Path, *, secret_file: Path | None = None, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """Run ``cartreg serve`` until the block ends (bounded start and stop); yields its URL."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "cartreg",
        "serve",
        "--registry",
        str(registry),
        "--port",
        str(port),
        *extra,
    ]
    if secret_file is not None:
        args += ["--secret-file", str(secret_file)]
    env = {k: v for k, v in os.environ.items() if k not in ("CARTREG_SECRET", "CARTREG_DEBUG")}
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if httpx2.get(f"{base}/login", timeout=2).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not start in 60 s"
                time.sleep(0.2)
            yield base
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


class LiveClient:
    """An HTTP client that keeps the portal's cookies itself: they are ``Secure``, and a
    cookie jar sends those over https only, while the test server speaks http on loopback."""

    def __init__(self, base: str) -> None:
        self.http = httpx2.Client(base_url=base, follow_redirects=False, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(method, path, headers=headers, **kwargs)
        for key, value in response.headers.multi_items():
            if key.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                cookie_value = rest.split(";", 1)[0]
                if cookie_value in ("", '""') or "max-age=0" in value.lower():
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = cookie_value
        return response

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx2.Response:
        return self.request("POST", path, **kwargs)

    def login(self, user: str, password: str = PASSWORD) -> httpx2.Response:
        form = self.get("/login")
        return self.post(
            "/login",
            data={"user": user, "password": password, "csrf_token": csrf_of(form.text)},
        )

    @property
    def signed_in(self) -> bool:
        return SESSION_COOKIE in self.cookies
