"""Offline mode: let this process reach loopback addresses (127.0.0.1, ::1) and nothing else.

The book promises that nothing is downloaded at run time.  This module makes that
checkable: after :func:`install`, every way out of the process that Python offers —
``socket.connect`` and ``connect_ex`` (TCP), ``sendto``/``sendmsg`` (UDP without a
connection) and host-name resolution (``getaddrinfo``, i.e. DNS) — raises
:class:`NetworkBlockedError` unless its target is on this machine.  Local servers, such
as Jupyter's kernel channels or ``python -m llmbook serve``, keep working.

Where it is used:

* ``llmbook.setup_notebook()`` installs it when the environment variable
  ``LLMBOOK_OFFLINE=1`` is set; ``make chapters`` (CI's notebook run) sets it, so a
  chapter that tried to download something would fail there instead of silently
  depending on the network.
* The test suite installs it for the whole session (``tests/conftest.py``), on top of
  ``pytest-socket``, whose host allow-list only covers ``connect``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

__all__ = [
    "NetworkBlockedError",
    "install",
    "uninstall",
    "installed",
    "is_loopback",
    "install_if_requested",
    "ENV_VAR",
]

#: set to 1 (or true/yes) to make :func:`llmbook.setup_notebook` install the guard
ENV_VAR = "LLMBOOK_OFFLINE"

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkBlockedError(RuntimeError):
    """Something tried to reach a non-loopback address while llmbook runs offline."""


def is_loopback(host: object) -> bool:
    """Is ``host`` (an address literal or name) on this machine only?"""
    if not isinstance(host, str):
        return False
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _host(address: Any) -> object:
    return address[0] if isinstance(address, tuple) and address else None


_saved: dict[str, Any] = {}


def _check(sock: socket.socket, address: Any, what: str) -> None:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return
    host = _host(address)
    if not is_loopback(host):
        raise NetworkBlockedError(
            f"{what} to {host!r} blocked: this process runs offline and may only reach "
            "127.0.0.1/::1 (everything the book needs is in data/ or installed packages; "
            f"unset {ENV_VAR} only if you really mean to go online)"
        )


def installed() -> bool:
    """Is the guard in place?"""
    return bool(_saved)


def install() -> None:
    """Allow only loopback for connect, connect_ex, sendto, sendmsg and name resolution.

    Idempotent; :func:`uninstall` restores the original functions.
    """
    if _saved:
        return
    cls = socket.socket
    _saved.update(
        connect=cls.connect,
        connect_ex=cls.connect_ex,
        sendto=cls.sendto,
        sendmsg=cls.sendmsg,
        getaddrinfo=socket.getaddrinfo,
    )

    def connect(self: socket.socket, address: Any) -> None:
        _check(self, address, "connect")
        _saved["connect"](self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(self, address, "connect_ex")
        return int(_saved["connect_ex"](self, address))

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        _check(self, args[-1], "sendto")
        return int(_saved["sendto"](self, data, *args))

    def sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
        if len(args) >= 3 and args[2] is not None:
            _check(self, args[2], "sendmsg")
        return int(_saved["sendmsg"](self, buffers, *args))

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not is_loopback(name):
            raise NetworkBlockedError(
                f"resolving {name!r} blocked: this process runs offline (no DNS); "
                "use 127.0.0.1 for local servers"
            )
        return _saved["getaddrinfo"](host, *args, **kwargs)

    cls.connect = connect  # type: ignore[method-assign,assignment]
    cls.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    cls.sendto = sendto  # type: ignore[method-assign,assignment]
    cls.sendmsg = sendmsg  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo


def uninstall() -> None:
    """Restore the functions :func:`install` replaced."""
    if not _saved:
        return
    cls = socket.socket
    cls.connect = _saved["connect"]  # type: ignore[method-assign]
    cls.connect_ex = _saved["connect_ex"]  # type: ignore[method-assign]
    cls.sendto = _saved["sendto"]  # type: ignore[method-assign]
    cls.sendmsg = _saved["sendmsg"]  # type: ignore[method-assign]
    socket.getaddrinfo = _saved["getaddrinfo"]
    _saved.clear()


def install_if_requested() -> bool:
    """Install the guard when ``LLMBOOK_OFFLINE`` is 1/true/yes; return whether it is on.

    Also tells Hugging Face libraries to stay offline, so they fail fast with their own
    clear message instead of retrying a download.
    """
    if os.environ.get(ENV_VAR, "").strip().lower() not in {"1", "true", "yes"}:
        return installed()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    install()
    return True
