"""Close the gaps that ``pytest-socket --allow-hosts`` leaves open.

pytest-socket's host allow-list only wraps ``socket.socket.connect``.  Other ways out
stay open: ``connect_ex`` (a TCP connection that reports errors as a number),
``sendto``/``sendmsg`` on a UDP socket (no connect at all), and host-name resolution
(``getaddrinfo`` queries DNS from C).  The guard that closes them lives in the package,
:mod:`llmbook.book.offline` (notebook kernels use it too, through ``LLMBOOK_OFFLINE=1``); this
module is the tests' short name for it, also used by child processes that tests start
(``python -c "import netguard; netguard.install()"``).
"""

from __future__ import annotations

from llmbook.book.offline import (
    NetworkBlockedError,
    install,
    installed,
    is_loopback,
    uninstall,
)

__all__ = ["NetworkBlockedError", "install", "uninstall", "installed", "is_loopback"]
