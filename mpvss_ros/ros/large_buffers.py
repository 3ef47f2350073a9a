"""Keep multi-megabyte message buffers on the heap instead of fresh mmap()s.

glibc serves allocations above its mmap threshold (128 KiB at start, raised adaptively) with a
new mapping, and returns it to the kernel on free. A 1024x2048 camera frame is 6 MiB: every
(de)serialisation then page-faults its whole buffer in again. Measured with rclpy's
``serialize_message`` on a 6 MiB sensor_msgs/Image on this project's 2-core VM: 16.5 ms per
message with glibc's defaults, 1.4 ms with the thresholds below. Raising the mmap threshold to
glibc's maximum (32 MiB on 64-bit) and the trim threshold above it lets freed frame buffers be
reused; the cost is up to that much freed memory kept by the process.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 64 << 20


def keep_large_buffers_on_heap() -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where that is not glibc
    (musl, macOS), where nothing is changed."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
