"""Shared test fixtures: an isolated ROS 2 domain per test process, and subprocesses that are
always killed (by PID) at teardown."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Node subprocesses log to files the tests read while the node runs: no stdio buffering there.
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


def _claim_domain(first: int = 10, count: int = 90, lock_dir: Path | None = None):
    """(domain, lock file descriptor): a domain in first..first+count-1 that no other test run of
    this user on this machine holds. Each run keeps an exclusive flock on the domain's file until
    it ends (the kernel drops it if the run dies); a pid-derived domain alone collided between
    concurrent runs. The directory is the user's own (0700, checked), and lock files are opened
    without following links or truncating anything."""
    import fcntl
    import tempfile

    locks = lock_dir or Path(tempfile.gettempdir()) / f"mpvss_ros_test_domains_{os.getuid()}"
    locks.mkdir(mode=0o700, exist_ok=True)
    info = locks.lstat()
    if info.st_uid != os.getuid() or not locks.is_dir() or locks.is_symlink():
        raise RuntimeError(f"{locks} is not a directory of this user's: remove it or set TMPDIR")
    start = os.getpid() % count
    for i in range(count):
        domain = first + (start + i) % count  # 10..99: valid Fast DDS port range, away from the default 0
        try:
            fd = os.open(locks / f"{domain}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise RuntimeError(f"cannot open the lock file of ROS domain {domain} in {locks}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return domain, fd
    raise RuntimeError(f"all ROS domains {first}..{first + count - 1} are held by other test runs ({locks})")


@pytest.fixture(scope="session")
def ros_domain():
    """ROS_DOMAIN_ID unique to this test process, discovery limited to this machine.

    Set in os.environ (before rclpy.init) so that this process and every subprocess it starts
    share the domain while other test runs on the machine do not see them.
    """
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    domain, lock = _claim_domain()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA?sockets_size=8MB")  # as tools/env.sh
    yield domain
    os.close(lock)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # the old-style wrapper: pytest 7 (Ubuntu 24.04) too
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, for fixtures that act on a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def spawn(tmp_path, request):
    """spawn(args, name=...) starts a subprocess (stdout+stderr to a log file under tmp_path)
    and returns it; every process started is interrupted, then killed, at teardown.
    ``proc.log_text()`` returns what it printed so far. When the test failed, the end of each
    process's log is printed at teardown, so that an intermittent failure in CI shows what the
    node was doing."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], name: str = "proc", env: dict | None = None) -> subprocess.Popen:
        log_path = tmp_path / f"{name}-{len(started)}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, **(env or {})})
        log.close()
        proc.log_text = lambda: log_path.read_text(errors="replace")
        started.append(proc)
        return proc

    yield start
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for proc in started:
            tail = proc.log_text().splitlines()[-40:]
            print(f"--- last {len(tail)} lines of {' '.join(map(str, proc.args))[:200]} "
                  f"(pid {proc.pid}, exit {proc.poll()}):", *tail, sep="\n")
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
    for proc in started:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


PYTHON = sys.executable


def _share_random_model_exports() -> None:
    """Export each (size, tiny, seed, weights) random model once per test session.

    `export_random_model` is deterministic for its arguments and an ONNX export costs 25-60 s on
    2 cores; many test modules need the same small model. The first call exports for real (and is
    what test_export_* checks); later calls copy that directory. Patched here, before the test
    modules import the function.
    """
    import shutil
    import tempfile

    import mpvss_ros.model.export as export

    real = export.export_random_model
    cache_root = Path(tempfile.mkdtemp(prefix="mpvss-test-models-"))
    cache: dict[tuple, Path] = {}

    def shared(out_dir, size=(64, 128), tiny=True, seed=0, write_weights=True):
        key = (tuple(size), bool(tiny), int(seed), bool(write_weights))
        if key not in cache:
            cache[key] = real(cache_root / f"m{len(cache)}", size=size, tiny=tiny, seed=seed,
                              write_weights=write_weights)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for item in cache[key].iterdir():
            shutil.copy2(item, out / item.name)
        return out

    export.export_random_model = shared


_share_random_model_exports()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random model directory (64x128 graphs + weights), exported once per session."""
    from mpvss_ros.model.export import export_random_model

    out = tmp_path_factory.getbasetemp() / "mpvss_tiny_model"
    if not (out / "model.json").is_file():
        export_random_model(out, size=(64, 128), tiny=True, seed=0)
    return out
