"""The suite is offline by construction: pytest-socket blocks every non-loopback connection.

``pyproject.toml`` runs pytest with ``--disable-socket --allow-hosts=127.0.0.1,localhost,::1``.
These tests check that this really holds (a connection to a routable address is refused
*before* any packet leaves the machine), that loopback still works (the local HTTP servers
of the data and serving tests need it), and that notebooks still execute under nbval with
the same options (nbval talks to the Jupyter kernel over ZeroMQ, not Python sockets).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import netguard
import pytest
from pytest_socket import SocketBlockedError, SocketConnectBlockedError

pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket")

ROOT = Path(__file__).resolve().parents[1]

#: A private address that is never answered: if the guard failed, the connect would hang
#: (the timeout below keeps the test short) instead of raising pytest-socket's error.
BLACKHOLE = "10.255.255.1"
#: pytest-socket's errors, or netguard's when conftest.py installs it for the whole suite
BLOCKED = (SocketConnectBlockedError, SocketBlockedError, netguard.NetworkBlockedError)


def test_suite_options_block_the_network() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "--disable-socket" in text
    assert "--allow-hosts=127.0.0.1,localhost,::1" in text


def test_connect_to_a_routable_address_is_blocked() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        with pytest.raises(SocketConnectBlockedError, match=BLACKHOLE):
            s.connect((BLACKHOLE, 80))
    finally:
        s.close()


def test_create_connection_and_http_clients_are_blocked() -> None:
    with pytest.raises(BLOCKED):
        socket.create_connection((BLACKHOLE, 443), timeout=0.5)
    import urllib.request

    with pytest.raises(BLOCKED):
        urllib.request.urlopen(f"http://{BLACKHOLE}/", timeout=0.5)


@pytest.fixture
def guarded() -> Iterator[None]:
    already = netguard.installed()  # conftest.py may install it for the whole suite
    netguard.install()
    yield
    if not already:
        netguard.uninstall()


def test_netguard_closes_connect_ex_udp_and_dns(guarded: None) -> None:
    """pytest-socket's allow-list wraps only ``connect``; netguard covers the other exits."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.settimeout(0.5)
        with pytest.raises(netguard.NetworkBlockedError, match="runs offline"):
            tcp.connect_ex((BLACKHOLE, 80))
        with pytest.raises(netguard.NetworkBlockedError, match="sendto"):
            udp.sendto(b"x", (BLACKHOLE, 53))
        with pytest.raises(netguard.NetworkBlockedError, match="sendmsg"):
            udp.sendmsg([b"x"], [], 0, (BLACKHOLE, 53))
        with pytest.raises(netguard.NetworkBlockedError, match="no DNS"):
            socket.getaddrinfo("example.com", 80)
        # loopback keeps working: names, literals and a real UDP datagram to ourselves
        assert socket.getaddrinfo("localhost", 80)
        assert socket.getaddrinfo("127.0.0.1", 80)
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rx.bind(("127.0.0.1", 0))
            rx.settimeout(5)
            udp.sendto(b"ping", rx.getsockname())
            assert rx.recvfrom(16)[0] == b"ping"
        finally:
            rx.close()
    finally:
        tcp.close()
        udp.close()


def test_netguard_uninstall_restores_socket() -> None:
    was = netguard.installed()  # conftest.py installs it for the session: lift it briefly
    netguard.uninstall()
    try:
        names = ("connect", "connect_ex", "sendto", "sendmsg")
        before = [getattr(socket.socket, n) for n in names] + [socket.getaddrinfo]
        netguard.install()
        netguard.install()  # idempotent: a second install must not wrap the wrappers
        assert socket.getaddrinfo is not before[-1]
        netguard.uninstall()
        assert [getattr(socket.socket, n) for n in names] + [socket.getaddrinfo] == before
    finally:
        if was:
            netguard.install()


def test_loopback_is_allowed() -> None:
    """The data-fetch and server tests run real HTTP on 127.0.0.1; that must keep working."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        import urllib.request

        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert json.loads(r.read()) == {"ok": True}
    finally:
        server.shutdown()
        server.server_close()


NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": 1,
            "id": "c1",
            "metadata": {"tags": ["nbval-check-output"]},
            "outputs": [{"name": "stdout", "output_type": "stream", "text": ["42\n"]}],
            "source": ["print(6 * 7)"],
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.mark.slow
def test_nbval_runs_notebooks_with_sockets_disabled(tmp_path: Path) -> None:
    """A notebook executes and is checked by nbval under the suite's socket options.

    Run in a fresh pytest process (with the project's ``addopts``) so that nbval starts a
    real kernel; the committed output ``42`` must be reproduced, and a wrong committed
    output must be reported, so the check is not vacuous.
    """
    good = tmp_path / "good.ipynb"
    good.write_text(json.dumps(NOTEBOOK), encoding="utf-8")
    bad_nb = json.loads(json.dumps(NOTEBOOK))
    bad_nb["cells"][0]["outputs"][0]["text"] = ["41\n"]
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps(bad_nb), encoding="utf-8")
    env = dict(os.environ, PYTHONHASHSEED="0")

    def nbval(nb: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
             "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(nb)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    ok = nbval(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed" in ok.stdout
    fail = nbval(bad)
    assert fail.returncode == 1, fail.stdout + fail.stderr
    assert "1 failed" in fail.stdout


def test_the_whole_session_is_guarded() -> None:
    """conftest.py installs the guard for every test, not only the ones that ask for it."""
    assert netguard.installed()
    with pytest.raises(BLOCKED):
        socket.getaddrinfo("pypi.org", 443)


OFFLINE_KERNEL = f"""
import socket, llmbook, llmbook.book.offline
llmbook.setup_notebook()
print("guard", llmbook.book.offline.installed())
for what, call in [] if not llmbook.book.offline.installed() else [
    ("dns", lambda: socket.getaddrinfo("pypi.org", 443)),
    ("tcp", lambda: socket.create_connection(("{BLACKHOLE}", 80), timeout=2)),
    ("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("{BLACKHOLE}", 53))),
]:
    try:
        call()
        print(what, "REACHED")
    except Exception as e:
        print(what, type(e).__name__, str(e)[:60])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
c = socket.create_connection(s.getsockname(), timeout=2)
print("loopback ok"); c.close(); s.close()
"""


@pytest.mark.parametrize("flag", ["1", ""])
def test_notebooks_run_offline_when_asked(flag: str) -> None:
    """``LLMBOOK_OFFLINE=1`` (set by ``make chapters``) makes ``setup_notebook`` block the network.

    Run in a fresh interpreter without the suite's guards, as a notebook kernel would be;
    without the variable nothing is installed (readers on Colab are not affected).
    """
    env = {k: v for k, v in os.environ.items() if k != "LLMBOOK_OFFLINE"}
    env["LLMBOOK_OFFLINE"] = flag
    env["MPLBACKEND"] = "Agg"
    out = subprocess.run(
        [sys.executable, "-c", OFFLINE_KERNEL], env=env, capture_output=True, text=True,
        timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "loopback ok" in out.stdout
    if flag:
        for what in ("dns", "tcp", "udp"):
            assert f"{what} NetworkBlockedError" in out.stdout, out.stdout
        assert "runs offline" in out.stdout
        assert "guard True" in out.stdout
    else:  # nothing is attempted then: the suite itself must not reach the network
        assert "guard False" in out.stdout, out.stdout


def test_make_chapters_runs_the_notebooks_offline() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nchapters:", 1)[1].split("\n\n", 1)[0]
    assert "LLMBOOK_OFFLINE=1" in recipe and "--nbval" in recipe


def test_setup_notebook_slows_progress_bars_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved notebooks store every progress-bar refresh; 2 s between refreshes keeps them small."""
    import llmbook
    from llmbook.utils import progress_bar

    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.delenv("LLMBOOK_OFFLINE", raising=False)
    llmbook.setup_notebook()
    with progress_bar(range(3)) as bar:
        assert bar.mininterval == 2.0
    monkeypatch.setenv("TQDM_MININTERVAL", "0.5")  # a reader's own choice wins
    llmbook.setup_notebook()
    with progress_bar(range(3)) as bar:
        assert bar.mininterval == 0.5
