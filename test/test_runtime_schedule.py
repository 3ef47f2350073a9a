import pytest

from mpvss_ros.runtime.schedule import KeyFrameSchedule


def pattern(schedule, stamps, scores=None):
    scores = scores or [None] * len(stamps)
    return [int(schedule.decide(t, s)) for t, s in zip(stamps, scores)]


def test_interval_pattern_over_20_frames():
    s = KeyFrameSchedule.create(mode="interval", interval=5)
    assert pattern(s, [i * 0.1 for i in range(20)]) == [1, 0, 0, 0, 0] * 4


def test_interval_one_is_every_frame():
    s = KeyFrameSchedule.create(mode="interval", interval=1)
    assert pattern(s, range(6)) == [1] * 6


def test_timer_follows_message_time_not_frame_count():
    s = KeyFrameSchedule.create(mode="timer", period_s=1.0)
    # 4 Hz for 2 s, then a 3 s gap: keys at t=0, 1.0, 2.0 (message time) and right after the gap.
    stamps = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 5.0, 5.25]
    assert pattern(s, stamps) == [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0]


def test_motion_respects_threshold_and_bounds():
    s = KeyFrameSchedule.create(mode="motion", motion_threshold=0.1, min_interval=2, max_interval=6)
    scores = [None, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    # frame1: below min_interval -> no key even at 0.5; frame2: key; then max_interval=6 forces frame 8.
    assert pattern(s, range(10), scores) == [1, 0, 1, 0, 0, 0, 0, 0, 1, 0]


def test_request_forces_next_frame_and_reset_restarts():
    s = KeyFrameSchedule.create(mode="interval", interval=10)
    assert pattern(s, range(3)) == [1, 0, 0]
    s.request()
    assert pattern(s, range(3, 6)) == [1, 0, 0]
    s.reset()
    assert pattern(s, range(6, 8)) == [1, 0]


def test_update_at_run_time_takes_effect_and_rejects_bad_values():
    s = KeyFrameSchedule.create(mode="interval", interval=5)
    assert pattern(s, range(3)) == [1, 0, 0]
    s.update(interval=2)
    # Frame 3 is already 3 frames past the key frame, so the new interval keys it at once.
    assert pattern(s, range(3, 7)) == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="interval"):
        s.update(interval=0)
    with pytest.raises(ValueError, match="mode"):
        s.update(mode="sometimes")
    with pytest.raises(ValueError, match="min_interval"):
        s.update(min_interval=10, max_interval=5)
    assert s.settings.interval == 2
