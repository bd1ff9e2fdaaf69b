"""The engine process's memory allocator, told to give large blocks back (glibc only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 128 * 1024


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Keep allocations of `threshold` bytes or more in their own mappings, returned to the
    system when freed. True when the allocator took it.

    glibc raises the threshold each time such a block is freed (up to 32 MiB), after which
    the historian's compaction arrays (a few MB every second or so at 75,000 samples/s) come
    from the heap and stay there: measured under overload, RSS climbed to 88 MiB over 90 s
    in steps, and to 80 MiB by 70 s, then flat, with the threshold pinned (issue 19).
    Elsewhere (musl, macOS) nothing is done."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return ok
