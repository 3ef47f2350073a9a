"""MPVSS model core on a small random config: shapes, gradients, losses, checkpoints, FLOPs."""
import json

import pytest
import torch

from mpvss_ros.model.config import MPVSSConfig, small_config, tiny_segmentor_config
from mpvss_ros.model.losses import epe_loss, mask2former_loss, multiscale_epe, targets_from_train_ids
from mpvss_ros.model.mpvss import MPVSS
from mpvss_ros.model.segmentor import KeyFrameSegmentor

H, W = 64, 128


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MPVSS(small_config((H, W))).eval()


def _images(seed=0):
    g = torch.Generator().manual_seed(seed)
    key = torch.rand(1, 3, H, W, generator=g) * 255
    return key, torch.roll(key, shifts=4, dims=3)


def test_shapes(model):
    n, c = model.segmentor.num_queries, model.segmentor.hidden_dim
    key, cur = _images()
    with torch.no_grad():
        k = model.key_frame(key)
        p = model.propagate(key, cur, k.queries, k.mask_logits)
    assert k.queries.shape == (1, n, c)
    assert k.mask_logits.shape == (1, n, H // 4, W // 4)
    assert k.class_logits.shape == (1, n, 20)
    assert p.mask_logits.shape == (1, n, H // 4, W // 4)
    assert p.flow.shape == (1, n, 2, H // 4, W // 4)
    assert p.pixel_flows[-1].shape == (1, 2, H // 8, W // 8)
    assert torch.isfinite(p.flow).all()
    px = model.query_flow.pixel_flow(key, cur, (H, W))
    assert px.shape == (1, 2, H, W)


def test_config_json_round_trip_and_class_names(tmp_path, model):
    cfg = small_config((H, W))
    cfg.save(tmp_path / "c.json")
    assert MPVSSConfig.load(tmp_path / "c.json") == cfg
    assert model.class_names[0] == "road" and model.class_names[18] == "bicycle"
    with pytest.raises(ValueError):
        MPVSSConfig.from_dict({"no_such_field": 1})


def test_default_segmentor_is_the_calibrated_size():
    seg = KeyFrameSegmentor.from_config(tiny_segmentor_config())
    params = sum(p.numel() for p in seg.parameters())
    assert abs(params - 1.77e6) < 0.01e6, params
    assert seg.num_queries == 16 and seg.hidden_dim == 64 and seg.num_classes == 19


def test_gradients_reach_flow_module_and_heads_only():
    torch.manual_seed(0)
    model = MPVSS(small_config((H, W)))
    trainable = model.freeze_for_flow_training()
    assert trainable
    key, cur = _images(1)
    k = model.key_frame(key)
    p = model.propagate(key, cur, k.queries.detach(), k.mask_logits)
    labels = torch.zeros(1, H, W, dtype=torch.long)
    labels[:, :, W // 2:] = 13
    masks, classes = targets_from_train_ids(labels)
    loss, terms = mask2former_loss(model.segmentor, p.mask_logits, k.class_logits, masks, classes, seed=0)
    # only the pixel-flow passthrough is live at init; the EPE term reaches the whole encoder
    loss = loss + multiscale_epe(p.pixel_flows, torch.ones(1, 2, H, W))
    loss.backward()

    def nonzero(module):
        return any(q.grad is not None and q.grad.abs().sum() > 0 for q in module.parameters())

    seg = model.segmentor
    assert nonzero(seg.class_head) and nonzero(seg.mask_head)
    assert nonzero(model.query_flow.encoder)
    assert model.query_flow.head.fuse.weight.grad[:, :2].abs().sum() > 0  # query-flow channels
    frozen = [q for name, q in seg.model.named_parameters()
              if "class_predictor" not in name and "mask_embedder" not in name]
    assert frozen and all(q.grad is None for q in frozen)
    assert all(not q.requires_grad for q in frozen)

    # once the fusion conv weights the query flow, the motion decoder receives gradient too
    with torch.no_grad():
        model.query_flow.head.fuse.weight[:, :2] += 0.1
    model.zero_grad(set_to_none=True)
    k = model.key_frame(key)
    p = model.propagate(key, cur, k.queries.detach(), k.mask_logits)
    mask2former_loss(seg, p.mask_logits, k.class_logits, masks, classes, seed=0)[0].backward()
    assert nonzero(model.query_flow.decoder) and nonzero(model.query_flow.head.query_mlp)


def test_hungarian_loss_prefers_matching_masks(model):
    labels = torch.zeros(1, H, W, dtype=torch.long)
    labels[:, :, W // 2:] = 13
    masks, classes = targets_from_train_ids(labels)
    assert classes[0].tolist() == [0, 13] and masks[0].shape == (2, H, W)
    n = model.segmentor.num_queries
    good_masks = torch.full((1, n, H // 4, W // 4), -10.0)
    good_masks[0, 0, :, : W // 8] = 10.0
    good_masks[0, 1, :, W // 8:] = 10.0
    class_logits = torch.full((1, n, 20), -5.0)
    class_logits[0, :, 19] = 5.0  # no object
    class_logits[0, 0, 0], class_logits[0, 1, 13] = 5.0, 5.0
    class_logits[0, :2, 19] = -5.0
    good, terms = mask2former_loss(model.segmentor, good_masks, class_logits, masks, classes, seed=0)
    swapped, _ = mask2former_loss(model.segmentor, good_masks.flip(-1), class_logits, masks, classes, seed=0)
    again, _ = mask2former_loss(model.segmentor, good_masks, class_logits, masks, classes, seed=0)
    assert set(terms) == {"loss_cross_entropy", "loss_mask", "loss_dice"}
    assert float(good) < 1.0 and float(swapped) > 10 * float(good)
    assert float(again) == float(good)


def test_epe_loss_values():
    pred = torch.zeros(1, 2, 4, 8)
    target = torch.zeros(1, 2, 8, 16)
    target[:, 0] = 3.0
    target[:, 1] = 4.0
    assert abs(float(epe_loss(pred, target)) - 5.0) < 1e-6
    valid = torch.zeros(1, 8, 16, dtype=torch.bool)
    pred2 = torch.zeros(1, 2, 8, 16)
    pred2[:, 0, :, :8] = 3.0
    pred2[:, 1, :, :8] = 4.0
    valid[:, :, :8] = True
    assert float(epe_loss(pred2, target, valid)) < 1e-6
    # upsampling doubles magnitudes: 1 px on a 4x8 grid is 2 px on an 8x16 grid
    assert abs(float(epe_loss(torch.ones(1, 2, 4, 8), torch.full((1, 2, 8, 16), 2.0)))) < 1e-6


def test_checkpoint_round_trip(tmp_path, model):
    model.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["segmentor_hf_config"]["num_queries"] == model.segmentor.num_queries
    loaded = MPVSS.load(tmp_path / "ckpt")
    key, cur = _images(2)
    with torch.no_grad():
        a, b = model.key_frame(key), loaded.key_frame(key)
        pa = model.propagate(key, cur, a.queries, a.mask_logits)
        pb = loaded.propagate(key, cur, b.queries, b.mask_logits)
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.class_logits, b.class_logits)
    assert torch.equal(pa.mask_logits, pb.mask_logits)
    with pytest.raises(FileNotFoundError):
        MPVSS.load(tmp_path / "missing")


def test_transformers_directory_round_trip_offline(tmp_path, monkeypatch, model):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model.segmentor.save_pretrained(tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    seg = KeyFrameSegmentor.from_pretrained(tmp_path / "hf")
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        a, b = model.segmentor(x), seg(x)
    assert torch.allclose(a.mask_logits, b.mask_logits, atol=1e-6)
    # an MPVSS built on that directory embeds its config in the checkpoint
    cfg = small_config((H, W))
    cfg.segmentor_path = str(tmp_path / "hf")
    m2 = MPVSS(cfg)
    assert m2.segmentor.num_queries == model.segmentor.num_queries
    with pytest.raises(FileNotFoundError):
        KeyFrameSegmentor.from_pretrained(tmp_path / "nothing")


def test_flow_head_fusion_is_the_3x3_conv_of_each_query_with_the_pixel_flow():
    """The head's shared/depthwise split computes exactly conv3x3([query flow; pixel flow]) per
    query, and its query flow is each query's x / y embedding dotted with the projected features."""
    import torch.nn.functional as F

    from mpvss_ros.model.flow_head import FlowHead
    from mpvss_ros.model.motion_encoder import resize_flow

    torch.manual_seed(4)
    head = FlowHead(query_dim=16, feature_channels=8, embed_dim=4)
    with torch.no_grad():
        head.fuse.weight.normal_()
        head.fuse.bias.normal_()
    queries, pixel = torch.randn(2, 3, 16), torch.randn(2, 2, 3, 5)
    # features on the mask grid (the shipped models), and coarser / finer (their flow is resized)
    for feat_size in ((6, 10), (3, 5), (12, 20)):
        feats = torch.randn(2, 8, *feat_size)
        out = head(queries, feats, pixel, (6, 10))
        fx, fy = head.flow_xy(queries, feats, pixel, (6, 10))
        assert torch.equal(out[:, :, 0], fx) and torch.equal(out[:, :, 1], fy)
        emb, proj = head.query_mlp(queries), head.feature_proj(feats)
        qflow = torch.stack([torch.einsum("bne,behw->bnhw", emb[..., :4], proj),
                             torch.einsum("bne,behw->bnhw", emb[..., 4:], proj)], dim=2)  # (2, 3, 2, *feat_size)
        assert torch.allclose(head.query_flow(queries, feats), qflow, atol=1e-5)
        qflow = resize_flow(qflow, (6, 10))
        pflow = resize_flow(pixel, (6, 10))
        for q in range(3):
            ref = F.conv2d(torch.cat([qflow[:, q], pflow], dim=1), head.fuse.weight, head.fuse.bias, padding=1)
            assert torch.allclose(out[:, q], ref, atol=1e-5)
