import numpy as np
import pytest

from mpvss_ros.runtime.motion import motion_score, thumbnail
from mpvss_ros.runtime.schedule import KeyFrameSchedule
from mpvss_ros.runtime.segmenter import VideoSegmenter
from runner_doubles import BandRunner


def frame(value, shape=(48, 96)):
    img = np.zeros(shape + (3,), np.uint8)
    img[:, : shape[1] // 2] = value
    img[:, shape[1] // 2:] = 255 - value
    return img


def test_interval_key_pattern_and_outputs_at_input_size():
    runner = BandRunner(input_size=(32, 64))
    seg = VideoSegmenter(runner, KeyFrameSchedule.create(interval=3))
    results = [seg.process(frame(40), 0.1 * i) for i in range(7)]
    assert [r.key_frame for r in results] == [True, False, False, True, False, False, True]
    assert [r.frames_since_key for r in results] == [0, 1, 2, 0, 1, 2, 0]
    assert runner.calls == ["key", "propagate", "propagate", "key", "propagate", "propagate", "key"]
    assert all(shape == (32, 64, 3) for shape in runner.seen_shapes)  # resized to the model input
    r = results[0]
    assert r.labels.shape == (48, 96) and r.labels.dtype == np.uint8
    assert r.confidence.shape == (48, 96) and r.confidence.dtype == np.float32
    assert r.labels[0, 0] == 40 // 32 and r.labels[0, -1] == min(7, (255 - 40) // 32)
    p = r.class_probability(1)
    assert p.shape == (48, 96) and p[:, :40].mean() == pytest.approx(0.9, abs=1e-3)


def test_inference_output_size():
    seg = VideoSegmenter(BandRunner(input_size=(32, 64)), output_size="inference")
    assert seg.process(frame(10), 0.0).labels.shape == (32, 64)


@pytest.mark.parametrize("change", ["resolution", "time", "stream"])
def test_state_reset_forces_key_frame(change):
    runner = BandRunner()
    seg = VideoSegmenter(runner, KeyFrameSchedule.create(interval=100))
    assert seg.process(frame(40), 1.0).key_frame
    assert not seg.process(frame(40), 1.1).key_frame
    shape, stamp, stream = (48, 96), 1.2, ""
    if change == "resolution":
        shape = (50, 100)
    elif change == "time":
        stamp = 0.5
    else:
        stream = "other"
    r = seg.process(frame(40, shape), stamp, stream)
    assert r.key_frame and r.reset_reason is not None and r.frames_since_key == 0
    assert not seg.process(frame(40, shape), stamp + 0.1, stream).key_frame


def test_request_key_frame():
    seg = VideoSegmenter(BandRunner(), KeyFrameSchedule.create(interval=100))
    keys = []
    for i in range(5):
        if i == 3:
            seg.request_key_frame()
        keys.append(seg.process(frame(40), i * 0.1).key_frame)
    assert keys == [True, False, False, True, False]


def test_motion_schedule_keys_on_scene_cut_not_static_scene():
    seg = VideoSegmenter(BandRunner(), KeyFrameSchedule.create(
        mode="motion", motion_threshold=0.05, min_interval=1, max_interval=50))
    static = [seg.process(frame(40), i * 0.1).key_frame for i in range(10)]
    assert static == [True] + [False] * 9
    cut = np.random.default_rng(0).integers(0, 255, (48, 96, 3), dtype=np.uint8)
    assert seg.process(cut, 1.0).key_frame
    assert not seg.process(cut, 1.1).key_frame


def test_motion_score_ignores_global_brightness():
    a = frame(60)
    brighter = np.clip(a.astype(int) + 30, 0, 255).astype(np.uint8)
    assert motion_score(thumbnail(a), thumbnail(brighter)) < 0.01
    assert motion_score(thumbnail(a), thumbnail(a[:, ::-1].copy())) > 0.2


def test_bad_image_is_rejected_with_reason():
    seg = VideoSegmenter(BandRunner())
    with pytest.raises(ValueError, match="uint8"):
        seg.process(np.zeros((4, 4, 3), np.float32), 0.0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        seg.process(np.zeros((0, 4, 3), np.uint8), 0.0)


def test_resize_image_shrinks_by_area_in_exact_halvings():
    import cv2

    from mpvss_ros.runtime.preprocess import resize_image

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    # factor 4: two exact halvings, each a 2x2 box mean, so within one grey level of the 4x4 box mean
    small = resize_image(img, (16, 32))
    box = img.reshape(16, 4, 32, 4, 3).astype(np.float64).mean(axis=(1, 3))
    assert small.shape == (16, 32, 3) and small.dtype == np.uint8
    assert np.abs(small - box).max() <= 1.0
    half = cv2.resize(img, (64, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(small, cv2.resize(half, (32, 16), interpolation=cv2.INTER_AREA))
    # factor 2, other factors, unequal factors: OpenCV's area filter in one step
    assert np.array_equal(resize_image(img, (32, 64)), half)
    for size in ((24, 48), (21, 42), (16, 64), (8, 32)):
        assert np.array_equal(resize_image(img, size), cv2.resize(img, size[::-1], interpolation=cv2.INTER_AREA))
    eighth = resize_image(img, (8, 16))
    assert np.abs(eighth - img.reshape(8, 8, 16, 8, 3).astype(np.float64).mean(axis=(1, 3))).max() <= 1.5  # 3 roundings
    # enlarging: bilinear; same size: the input itself
    assert np.array_equal(resize_image(img, (128, 256)), cv2.resize(img, (256, 128), interpolation=cv2.INTER_LINEAR))
    assert resize_image(img, (64, 128)) is img
