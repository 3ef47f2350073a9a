"""Per-query warp and semantic fusion against hand-made inputs and transformers' post-processing."""
import numpy as np
import pytest
import torch

from mpvss_ros.model.fusion import class_distribution, labels_and_confidence, scores_and_total, semantic_probabilities
from mpvss_ros.model.motion_encoder import resize_flow
from mpvss_ros.model.warp import warp_masks, warp_masks_xy


def test_zero_flow_is_identity():
    torch.manual_seed(0)
    masks = torch.randn(2, 5, 16, 32) * 10
    out = warp_masks(masks, torch.zeros(2, 5, 2, 16, 32))
    assert out.shape == masks.shape
    assert torch.max(torch.abs(out - masks)).item() <= 1e-5


def test_integer_translation_is_reproduced():
    torch.manual_seed(1)
    key = torch.randn(1, 3, 20, 30)
    dx, dy = 3, -2  # content moved by (+3, -2): current(x) = key(x - (3, -2))
    flow = torch.zeros(1, 3, 2, 20, 30)
    flow[:, :, 0] = -dx
    flow[:, :, 1] = -dy
    out = warp_masks(key, flow)
    expected = torch.roll(key, shifts=(dy, dx), dims=(2, 3))
    interior = (slice(None), slice(None), slice(3, 17), slice(4, 26))
    # exact up to the rounding of normalised grid coordinates
    assert torch.max(torch.abs(out[interior] - expected[interior])).item() <= 1e-5
    # a half-pixel error would be far larger than that: the test can tell
    assert torch.max(torch.abs(warp_masks(key, flow + 0.5)[interior] - expected[interior])).item() > 0.1


def test_each_query_gets_its_own_flow():
    masks = torch.zeros(1, 2, 8, 8)
    masks[0, :, 4, 4] = 1.0
    flow = torch.zeros(1, 2, 2, 8, 8)
    flow[0, 1, 0] = 1.0  # query 1 looks one pixel to the right: its peak moves left
    out = warp_masks(masks, flow)
    assert out[0, 0, 4, 4] == 1.0 and out[0, 1, 4, 3] == 1.0 and out[0, 1, 4, 4] == 0.0


@pytest.mark.parametrize("scale", [0.3, 4.0, 80.0])
def test_gather_warp_equals_grid_sample(scale):
    """The exported graph's gather warp samples like grid_sample(border, align_corners=False),
    including flows that leave the view (clamped to the edge)."""
    torch.manual_seed(2)
    masks = torch.randn(2, 4, 12, 20) * 5
    flow = torch.randn(2, 4, 2, 12, 20) * scale
    ref = warp_masks(masks, flow)
    out = warp_masks(masks, flow, method="gather")
    assert torch.max(torch.abs(out - ref)).item() <= 1e-4
    # a wrong neighbour or weight would be visible: the result is not just the input
    assert torch.max(torch.abs(out - masks)).item() > 0.5


def test_gather_warp_integer_shift_and_edges_exactly():
    key = torch.arange(2 * 6 * 9, dtype=torch.float32).reshape(1, 2, 6, 9)
    flow = torch.zeros(1, 2, 2, 6, 9)
    flow[0, 0, 0] = 2.0  # query 0 samples two pixels to the right
    flow[0, 1, 1] = -100.0  # query 1 samples far above the view: the top row, clamped
    out = warp_masks(key, flow, method="gather")
    assert torch.equal(out[0, 0, :, :7], key[0, 0, :, 2:])
    assert torch.equal(out[0, 0, :, 7:], key[0, 0, :, 8:9].expand(6, 2))
    assert torch.equal(out[0, 1], key[0, 1, :1].expand(6, 9))


def test_gather_warp_gradients_match_grid_sample():
    torch.manual_seed(3)
    masks = torch.randn(1, 3, 8, 10)
    flow = (torch.randn(1, 3, 2, 8, 10) * 2).requires_grad_(True)
    grads = []
    for method in ("grid_sample", "gather"):
        m = masks.clone().requires_grad_(True)
        f = flow.detach().clone().requires_grad_(True)
        (warp_masks(m, f, method=method) ** 2).sum().backward()
        grads.append((m.grad, f.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4)
    interior = grads[0][1].abs() > 0  # clamped points have no flow gradient in either
    assert torch.allclose(grads[0][1][interior], grads[1][1][interior], atol=1e-3)


def test_unknown_warp_method_raises():
    with pytest.raises(ValueError, match="unknown warp method"):
        warp_masks(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 4, 4), method="nearest")


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        warp_masks(torch.zeros(1, 2, 8, 8), torch.zeros(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match="flow planes of the same shape"):
        warp_masks_xy(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 9))


def test_resize_flow_rescales_magnitude():
    flow = torch.ones(1, 2, 4, 8)
    flow[:, 1] = 2.0
    up = resize_flow(flow, (8, 32))
    assert up.shape == (1, 2, 8, 32)
    assert torch.allclose(up[:, 0], torch.full((1, 8, 32), 4.0))
    assert torch.allclose(up[:, 1], torch.full((1, 8, 32), 4.0))


def test_fusion_matches_transformers_post_processing():
    from transformers import Mask2FormerImageProcessorPil
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerForUniversalSegmentationOutput

    torch.manual_seed(2)
    # transformers first resizes masks to 384x384; masks already that size make the step an identity.
    class_logits = torch.randn(1, 6, 20) * 3
    mask_logits = torch.nn.functional.interpolate(torch.randn(1, 6, 24, 24) * 4, size=(384, 384),
                                                  mode="bilinear", align_corners=False)
    outputs = Mask2FormerForUniversalSegmentationOutput(class_queries_logits=class_logits,
                                                        masks_queries_logits=mask_logits)
    proc = Mask2FormerImageProcessorPil()
    theirs = proc.post_process_semantic_segmentation(outputs, return_segmentation_scores=True)[0]
    ours = semantic_probabilities(class_logits, mask_logits)
    assert ours.shape == (1, 19, 384, 384)
    assert torch.allclose(ours[0], theirs.segmentation_scores, atol=1e-6)

    target = (500, 700)
    their_labels = proc.post_process_semantic_segmentation(outputs, target_sizes=[target])[0]
    labels, confidence = labels_and_confidence(ours, target)
    assert labels.dtype == torch.uint8 and labels.shape == (1, *target)
    agree = (labels[0].long() == their_labels).float().mean().item()
    assert agree == 1.0, agree
    assert float(confidence.min()) > 0 and float(confidence.max()) <= 1.0 + 1e-6


def test_class_distribution_sums_to_one_and_keeps_argmax():
    probs = torch.rand(2, 19, 5, 7) * 3
    dist = class_distribution(probs)
    assert torch.allclose(dist.sum(1), torch.ones(2, 5, 7), atol=1e-5)
    assert np.array_equal(dist.argmax(1).numpy(), probs.argmax(1).numpy())


def test_scores_and_total_sum_over_queries_equals_sum_over_classes():
    torch.manual_seed(2)
    classes, masks = torch.randn(2, 16, 20) * 3, torch.randn(2, 16, 6, 9) * 4
    scores, total = scores_and_total(classes, masks)
    assert torch.allclose(scores, semantic_probabilities(classes, masks))
    assert torch.allclose(total, scores.sum(dim=1, keepdim=True), atol=1e-5)
    assert torch.allclose(class_distribution(scores, total=total), class_distribution(scores), atol=1e-6)
    labels, conf = labels_and_confidence(scores, (12, 18), total=total)
    ref_labels, ref_conf = labels_and_confidence(scores, (12, 18))
    assert torch.equal(labels, ref_labels) and torch.allclose(conf, ref_conf, atol=1e-6)
