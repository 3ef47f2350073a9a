"""Host post-processing (runtime.postprocess): equal to the dense rule and to transformers'
post-processing; micro-benchmarks of it against the dense up-sampling (disabled in the suite)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mpvss_ros.model.fusion import labels_and_confidence as dense_torch
from mpvss_ros.runtime.postprocess import _dense, labels_and_confidence


def _scores(h, w, seed, noise=0.05, classes=19):
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(1, classes, max(h // 8, 1), max(w // 8, 1), generator=g) ** 3,
                           size=(h, w), mode="bilinear", align_corners=False)
    return (smooth + noise * torch.rand(1, classes, h, w, generator=g)).float()


@pytest.mark.parametrize("shape,seed", [((16, 32), 0), ((24, 40), 1), ((32, 64), 2), ((7, 9), 3)])
def test_block_rule_equals_dense_upsampling(shape, seed):
    s = _scores(*shape, seed)
    size = (4 * shape[0], 4 * shape[1])
    ref_labels, ref_conf = dense_torch(s, size)
    labels, conf = labels_and_confidence(s[0].numpy(), size)
    assert labels.dtype == np.uint8 and labels.shape == size and conf.dtype == np.float32
    assert (labels == ref_labels[0].numpy()).mean() == 1.0
    assert np.abs(conf - ref_conf[0].numpy()).max() < 1e-5


def test_other_integer_factors_and_fallback():
    s = _scores(12, 20, 4)
    for size in [(24, 40), (36, 60), (12, 20), (30, 50)]:  # x2, x3, x1, non-integer (dense path)
        ref_labels, ref_conf = dense_torch(s, size)
        labels, conf = labels_and_confidence(s[0].numpy(), size)
        assert (labels == ref_labels[0].numpy()).mean() >= 0.999, size
        assert np.abs(conf - ref_conf[0].numpy()).max() < 1e-4, size


def test_ties_go_to_the_first_class_and_labels_stay_in_range():
    from mpvss_ros.runtime.postprocess import _argmax_max

    s = _scores(16, 32, 5)[0].numpy()
    s[7] = s[3]  # an exact tie everywhere between classes 3 and 7: argmax's rule, the first wins
    s[12] = s.max(axis=0)  # class 12 wins everywhere it is not tied with an earlier class
    arg, best = _argmax_max(s)
    assert np.array_equal(arg, s.argmax(axis=0)) and np.array_equal(best, s.max(axis=0))
    labels, _ = labels_and_confidence(s, (64, 128))
    ref, _ = dense_torch(torch.from_numpy(s)[None], (64, 128))
    assert np.array_equal(labels, ref[0].numpy())
    s[:, 2, 3] = np.nan  # a broken pixel must not produce a label outside the class list
    arg, _ = _argmax_max(s)
    assert arg.max() < len(s) and arg[2, 3] == 0


def test_uniform_scores_take_the_shortcut_everywhere():
    s = np.zeros((19, 8, 16), np.float32)
    s[5] = 0.9
    s[2] = 0.1
    labels, conf = labels_and_confidence(s, (32, 64))
    assert (labels == 5).all() and np.allclose(conf, 0.9)


def test_matches_transformers_post_processing():
    from transformers import Mask2FormerImageProcessorPil
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerForUniversalSegmentationOutput

    from mpvss_ros.model.fusion import semantic_probabilities

    torch.manual_seed(3)
    # transformers resizes masks to 384x384 first: masks already that size keep the step an identity
    class_logits = torch.randn(1, 8, 20) * 3
    mask_logits = F.interpolate(torch.randn(1, 8, 24, 24) * 4, size=(384, 384), mode="bilinear",
                                align_corners=False)
    outputs = Mask2FormerForUniversalSegmentationOutput(class_queries_logits=class_logits,
                                                        masks_queries_logits=mask_logits)
    theirs = Mask2FormerImageProcessorPil().post_process_semantic_segmentation(
        outputs, target_sizes=[(1536, 1536)])[0].numpy()
    scores = semantic_probabilities(class_logits, mask_logits)[0].numpy()
    labels, _ = labels_and_confidence(scores, (1536, 1536))
    assert (labels == theirs).mean() >= 0.999


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        labels_and_confidence(np.zeros((8, 16), np.float32), (32, 64))


@pytest.mark.parametrize("method", ["blocks", "dense"])
def test_bench_postprocess_512x1024(benchmark, method):
    scores = _scores(128, 256, 7, noise=0.0)[0].numpy()
    fn = labels_and_confidence if method == "blocks" else (lambda s, size: _dense(s, size, 1e-6))
    labels, _ = benchmark(fn, scores, (512, 1024))
    assert labels.shape == (512, 1024)


def test_confidence_is_computed_only_when_read():
    from mpvss_ros.runtime.postprocess import UpsampledScores
    from mpvss_ros.runtime.runners import FrameOutput

    s = _scores(16, 32, 5)[0].numpy()
    up = UpsampledScores(s, (64, 128))
    assert up._confidence is None  # labels alone do not build the full-resolution confidence
    ref_labels, ref_conf = dense_torch(torch.from_numpy(s)[None], (64, 128))
    assert (up.labels == ref_labels[0].numpy()).all()
    assert np.abs(up.confidence - ref_conf[0].numpy()).max() < 1e-5
    assert up.confidence is up.confidence  # computed once

    calls = []
    out = FrameOutput(up.labels, lambda: calls.append(1) or up.confidence, s, s)
    assert calls == []
    assert out.confidence is up.confidence and out.confidence is up.confidence and calls == [1]


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_bench_decode_compressed_1024x2048(benchmark, ext):
    """What `input_transport: compressed` adds per frame: the header check and the decode of a
    camera-sized frame (JPEG quality 95 / PNG level 3, as `bag convert --image-format` writes)."""
    import cv2

    from mpvss_ros.data.encodings import compressed_size, decode_compressed_rgb
    from mpvss_ros.evaluation.benchmark import street_frames

    image = street_frames((1024, 2048), 1)[0]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, data = cv2.imencode(ext, image[:, :, ::-1], params)
    assert ok

    def check_and_decode():
        assert compressed_size(memoryview(data)) == (2048, 1024)
        return decode_compressed_rgb(data)

    rgb = benchmark(check_and_decode)
    assert rgb.shape == (1024, 2048, 3)
    if ext == ".png":
        np.testing.assert_array_equal(rgb, image)
