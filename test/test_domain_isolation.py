"""The test suite's ROS domains: concurrent runs on one machine never share one."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, _claim_domain


def test_a_held_domain_is_not_given_out_again(ros_domain):
    assert os.environ["ROS_DOMAIN_ID"] == str(ros_domain)
    domain, lock = _claim_domain()
    try:
        assert domain != ros_domain and 10 <= domain <= 99
        # another process (a concurrent test run) is refused both domains held here
        code = ("import sys; sys.path.insert(0, 'test'); from conftest import _claim_domain; "
                "print(_claim_domain()[0])")
        other = int(subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                                   capture_output=True, text=True).stdout)
        assert other not in (ros_domain, domain)
    finally:
        os.close(lock)
    again, lock = _claim_domain()  # released: available once more
    os.close(lock)
    assert again != ros_domain


def test_a_run_that_holds_every_domain_makes_the_next_claim_fail_clearly(tmp_path):
    held = []
    try:
        while True:
            try:
                held.append(_claim_domain(first=200, count=3, lock_dir=tmp_path))
            except RuntimeError as exc:
                assert "200..202" in str(exc)
                break
        assert sorted(d for d, _ in held) == [200, 201, 202]
    finally:
        for _, lock in held:
            os.close(lock)


def test_lock_files_are_not_followed_through_links(tmp_path):
    """A lock file planted as a link to another file: refused, and the target is left as it was."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    (locks / "300.lock").symlink_to(victim)
    with pytest.raises(RuntimeError, match="cannot open the lock file of ROS domain 300"):
        _claim_domain(first=300, count=1, lock_dir=locks)
    assert victim.read_text() == "keep me"


def test_a_lock_directory_that_is_a_link_is_refused(tmp_path):
    """Someone else's directory planted where ours goes (here as a link to it) is not used."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "locks").symlink_to(elsewhere)
    with pytest.raises(RuntimeError, match="is not a directory of this user's"):
        _claim_domain(first=300, count=1, lock_dir=tmp_path / "locks")
    assert not any(elsewhere.iterdir())
