"""Close the gaps that ``pytest-socket --allow-hosts`` leaves open.

pytest-socket's host allow-list only wraps ``socket.socket.connect``.  Three other ways
out stay open: ``connect_ex`` (a TCP connection that reports errors as a number),
``sendto``/``sendmsg`` on a UDP socket (no connect at all), and host-name resolution
(``getaddrinfo`` queries DNS from C).  :func:`install` wraps all of them so that only
loopback addresses are reachable; :func:`uninstall` restores the originals.  It is also
used by child processes that tests start (``python -c "import netguard; netguard.install()"``).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

__all__ = ["NetworkBlockedError", "install", "uninstall", "installed", "is_loopback"]

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkBlockedError(RuntimeError):
    """A test tried to reach a non-loopback address; the suite must run offline."""


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
            f"{what} to {host!r} blocked: the test suite runs offline and may only reach "
            "127.0.0.1/::1 (start a local server for network tests)"
        )


def installed() -> bool:
    """Is the guard in place (e.g. installed suite-wide by conftest.py)?"""
    return bool(_saved)


def install() -> None:
    """Allow only loopback for connect_ex, sendto, sendmsg and name resolution."""
    if _saved:
        return
    cls = socket.socket
    _saved.update(
        connect_ex=cls.connect_ex,
        sendto=cls.sendto,
        sendmsg=cls.sendmsg,
        getaddrinfo=socket.getaddrinfo,
    )

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
                f"resolving {name!r} blocked: the test suite runs offline (no DNS); use 127.0.0.1"
            )
        return _saved["getaddrinfo"](host, *args, **kwargs)

    cls.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    cls.sendto = sendto  # type: ignore[method-assign,assignment]
    cls.sendmsg = sendmsg  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo


def uninstall() -> None:
    """Restore the functions :func:`install` replaced."""
    if not _saved:
        return
    cls = socket.socket
    cls.connect_ex = _saved["connect_ex"]  # type: ignore[method-assign]
    cls.sendto = _saved["sendto"]  # type: ignore[method-assign]
    cls.sendmsg = _saved["sendmsg"]  # type: ignore[method-assign]
    socket.getaddrinfo = _saved["getaddrinfo"]
    _saved.clear()
