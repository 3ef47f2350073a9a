"""OnnxRunner and TorchRunner on the same tiny random model directory."""
import numpy as np
import pytest

from mpvss_ros.runtime.runners import (FrameOutput, KeyState, OnnxRunner, TorchRunner, create_runner,
                                       resolve_providers)

SIZE = (64, 128)



@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(SIZE[0], SIZE[1] + 8, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[:, i:i + SIZE[1]]) for i in (0, 2, 4)]


def test_onnx_runner_outputs(model_dir, frames):
    runner = OnnxRunner(model_dir, providers="auto", threads=1)
    assert runner.backend == "onnxruntime" and "CPUExecutionProvider" in runner.providers
    assert runner.input_size == SIZE and len(runner.class_names) == 19
    key, out = runner.key_frame(frames[0])
    assert isinstance(key, KeyState) and isinstance(out, FrameOutput)
    n = runner.num_queries
    assert key.queries.shape[:2] == (1, n)
    # the key image's share of the motion encoder's first conv: stride 2 on the half-size pair
    assert key.motion.shape[:1] == (1,) and key.motion.shape[2:] == (SIZE[0] // 4, SIZE[1] // 4)
    assert out.labels.shape == SIZE and out.labels.dtype == np.uint8 and out.labels.max() < 19
    assert out.confidence.shape == SIZE and out.confidence.dtype == np.float32
    assert 0 < out.confidence.min() and out.confidence.max() <= 1 + 1e-5
    assert out.probs.shape == (19, SIZE[0] // 4, SIZE[1] // 4) and out.mask_logits.shape == (n, 16, 32)
    nxt = runner.propagate(key, frames[1])
    assert nxt.labels.shape == SIZE and nxt.mask_logits.shape == (n, 16, 32)
    # propagating to the key frame itself changes little (flow of an identical pair is ~0)
    same = runner.propagate(key, frames[0])
    assert (same.labels == out.labels).mean() > 0.95


def test_onnx_and_torch_runners_agree(model_dir, frames):
    onnx = create_runner(model_dir, backend="onnx")
    torch_runner = create_runner(model_dir, backend="torch")
    assert isinstance(onnx, OnnxRunner) and isinstance(torch_runner, TorchRunner)
    ko, oo = onnx.key_frame(frames[0])
    kt, ot = torch_runner.key_frame(frames[0])
    assert np.abs(oo.mask_logits - ot.mask_logits).max() <= 1e-3
    assert (oo.labels == ot.labels).mean() >= 0.999
    for frame in frames[1:]:
        po, pt = onnx.propagate(ko, frame), torch_runner.propagate(kt, frame)
        assert np.abs(po.mask_logits - pt.mask_logits).max() <= 1e-3
        assert (po.labels == pt.labels).mean() >= 0.999
        assert np.abs(po.confidence - pt.confidence).max() <= 1e-3


def test_torch_runner_from_checkpoint(tmp_path, model_dir, frames):
    from mpvss_ros.model.mpvss import MPVSS

    MPVSS.load(model_dir, weights_name="weights.safetensors").save(tmp_path / "ckpt")
    runner = create_runner(tmp_path / "ckpt")  # no model.json: torch
    assert runner.backend == "torch" and runner.input_size == SIZE
    ref = TorchRunner(model_dir)
    assert np.array_equal(runner.key_frame(frames[0])[1].labels, ref.key_frame(frames[0])[1].labels)


def test_resize_and_bad_input(model_dir, frames):
    runner = OnnxRunner(model_dir)
    big = np.repeat(np.repeat(frames[0], 2, axis=0), 2, axis=1)
    _, out = runner.key_frame(big)
    assert out.labels.shape == SIZE
    with pytest.raises(ValueError):
        runner.key_frame(frames[0].astype(np.float32))
    with pytest.raises(ValueError):
        runner.key_frame(frames[0][..., :2])
    with pytest.raises(ValueError):
        resolve_providers(["NoSuchExecutionProvider"])
    with pytest.raises(FileNotFoundError):
        create_runner(model_dir / "missing")
    assert resolve_providers("auto")[-1] == "CPUExecutionProvider"
