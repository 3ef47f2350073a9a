"""keep_large_buffers_on_heap: frame-sized allocations stop being fresh mmap()s (glibc)."""
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, sys
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "on":
        from mpvss_ros.ros.large_buffers import keep_large_buffers_on_heap
        assert keep_large_buffers_on_heap()
    before = libc.mallinfo2().hblks
    block = libc.malloc(8 << 20)    # a 1024x2048 32FC1 map
    print(libc.mallinfo2().hblks - before)
    libc.free(block)
""")


def _mmapped_blocks(mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-1500:]
    return int(proc.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallinfo2 is glibc's")
def test_frame_sized_buffers_come_from_the_heap_after_the_call():
    assert _mmapped_blocks("off") == 1   # glibc's default: a fresh mapping per 8 MiB buffer
    assert _mmapped_blocks("on") == 0
