"""The test suite's ROS domains: concurrent runs on one machine never share one."""
from __future__ import annotations

import os
import subprocess
import sys

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
        lock.close()
    again, lock = _claim_domain()  # released: available once more
    lock.close()
    assert again != ros_domain


def test_a_run_that_holds_every_domain_makes_the_next_claim_fail_clearly():
    held = []
    try:
        while True:
            try:
                held.append(_claim_domain(first=200, count=3))
            except RuntimeError as exc:
                assert "200..202" in str(exc)
                break
        assert sorted(d for d, _ in held) == [200, 201, 202]
    finally:
        for _, lock in held:
            lock.close()
