"""The brain mask: lesion probabilities only inside the brain (deepwml.brain_mask)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import synthetic_flair
from deepwml.brain_mask import (BRAIN_MODEL_DIR, MIN_BRAIN_SHARE, BrainCanvas, brain_region, fill_holes_per_slice,
                                load_brain_model, removed_voxels, restrict_to_brain)
from deepwml.cli import main
from deepwml.errors import ModelFileError
from deepwml.model_files import ModelCard, load_model, save_model
from deepwml.segmenter import Segmenter
from deepwml.unet import UNet2D, UNetConfig


@pytest.fixture(scope="module")
def tiny_brain_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    net = UNet2D(UNetConfig(base_channels=4))
    out = tmp_path_factory.mktemp("tiny_brain")
    save_model(net, ModelCard("tiny-brain", "0.0.1", net.config, notes="random weights, tests only",
                              task="brain"), out)
    return out


def _disc(n: int, radius: float) -> np.ndarray:
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    return (x * x + y * y) <= radius * radius


def test_brain_region_fills_holes_and_grows_by_the_margin():
    ring = _disc(64, 20) & ~_disc(64, 8)
    speck = np.zeros((64, 64), bool)
    speck[2:4, 2:4] = True  # apart from the brain: dropped
    brain, region = brain_region((ring | speck)[None], margin_px=2.2)  # rounded up to 3 pixels
    assert brain.shape == region.shape == (1, 64, 64)
    assert np.array_equal(brain[0], _disc(64, 20))  # the hole (a ventricle, say) is brain
    grown = region[0] & ~brain[0]
    rows, cols = np.nonzero(grown)
    distance = np.hypot(rows - 31.5, cols - 31.5)
    assert distance.min() > 20 and distance.max() <= 23.5  # a 3-pixel band, no more
    assert np.array_equal(brain_region(ring[None], 0.0)[1], brain)  # no margin: no growth


def test_fill_holes_per_slice_is_the_2d_filling_of_every_slice():
    """The one-call filling equals SimpleITK's 2D filling slice by slice: a hole closed in its own
    slice is filled even where it opens into the next slice's background (3D filling would not),
    a gap to the border is not a hole, a diagonal leak is (4-connected background), empty slices stay."""
    ring = _disc(32, 12) & ~_disc(32, 5)
    open_ring = ring.copy()
    open_ring[14:18, :16] = False  # a channel to the border: not a hole
    diagonal = np.ones((32, 32), bool)
    diagonal[10:13, 10:13] = False
    diagonal[13, 13] = False
    diagonal[14:, 14:] = False  # background touching the hole only at a corner
    rng = np.random.default_rng(3)
    noisy = rng.random((32, 32)) < 0.7
    stack = np.stack([ring, np.zeros((32, 32), bool), open_ring, diagonal, noisy, ~_disc(32, 5)])
    expected = np.stack([sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(k.astype(np.uint8)),
                                                                      fullyConnected=False)) > 0 for k in stack])
    assert np.array_equal(fill_holes_per_slice(stack), expected)
    assert expected[0].sum() > ring.sum() and np.array_equal(expected[2], open_ring)
    assert expected[3][11, 11] and not expected[3][20, 20] and not expected[1].any()
    for density in (0.3, 0.5, 0.6, 0.8):  # random masks: many holes, channels and corner contacts
        noise = rng.random((4, 24, 28)) < density
        per_slice = np.stack([sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(k.astype(np.uint8)),
                                                                         fullyConnected=False)) > 0 for k in noise])
        assert np.array_equal(fill_holes_per_slice(noise), per_slice)


def test_brain_canvas_keeps_the_network_grid_and_maps_back_to_the_canvas():
    """A block-2 network's mask is stored on its own grid, aligned to the head window (which may
    start on an odd canvas pixel), and comes back onto the canvas exactly."""
    rows, cols = slice(3, 35), slice(5, 21)  # 32 x 16 window at odd offsets
    holder = BrainCanvas.empty(2, rows, cols, 64, block=2)
    assert holder.mask.shape == (2, 16, 8)
    logits = np.full((1, 1, 32, 16), -1.0, np.float32)
    logits[..., 4:8, 2:6] = 3.0  # two 2x2 blocks by two, as a pooled network repeats them
    holder.put(np.array([1]), logits)
    assert holder.mask[1].sum() == 4 and not holder.mask[0].any()
    canvas = holder.on_canvas(holder.mask, 64)
    assert canvas.shape == (2, 64, 64) and canvas[1].sum() == 16
    assert np.array_equal(np.argwhere(canvas[1])[[0, -1]], [[3 + 4, 5 + 2], [3 + 7, 5 + 5]])


def test_restrict_to_brain_zeroes_only_beyond_the_margin_and_reports_it(tiny_brain_model_dir):
    model = load_brain_model(tiny_brain_model_dir)
    canvas = np.zeros((2, 1, 64, 64), np.float32)
    canvas[:, 0][:, _disc(64, 30)] = 1.0  # the head
    brain = np.zeros(canvas.shape, bool)
    brain[:, 0][:, _disc(64, 20)] = True
    probs = np.full(canvas.shape, 0.9, np.float32)
    probs[1] = 0.3  # under the threshold: zeroed outside too, but no lesion was removed there
    before = probs.copy()
    holder = BrainCanvas(slice(0, 64), slice(0, 64), 1, brain[:, 0])
    info, marked, lost = restrict_to_brain(probs, holder, canvas, 0.5, (1.0, 2.0), 4.0, margin_mm=2.0, model=model)
    region = brain_region(brain[:, 0], 2.0)[1]
    assert info.applied and info.reason == "" and info.removed_ml == 0.0  # counted by the segmenter
    assert np.all(probs[:, 0][~region] == 0.0)
    assert np.all(probs[0, 0][region[0]] == np.float32(0.9)) and np.all(probs[1, 0][region[1]] == np.float32(0.3))
    assert marked.tolist() == [0]  # only slice 0 had marked lesion outside
    assert np.array_equal(lost[0, 0], np.where(~region[0], before[0, 0], 0.0))
    assert np.array_equal(probs[0] + lost[0], before[0])  # kept + lost = the map without the mask
    assert removed_voxels(probs[0, 0], lost[0, 0], 0.5) == int((~region[0]).sum())
    assert info.brain_ml == pytest.approx(brain_region(brain[:, 0], 0.0)[0].sum() * 1.0 * 2.0 * 4.0 / 1000)
    assert info.model == "tiny-brain@0.0.1" and info.margin_mm == 2.0
    assert json.loads(json.dumps(info.as_dict()))["applied"] is True


def test_an_implausible_brain_mask_is_not_applied(tiny_brain_model_dir, caplog):
    model = load_brain_model(tiny_brain_model_dir)
    canvas = np.zeros((1, 1, 64, 64), np.float32)
    canvas[0, 0][_disc(64, 30)] = 1.0
    brain = np.zeros(canvas.shape, bool)
    brain[0, 0, 30:33, 30:33] = True  # 9 pixels of a ~2,800-pixel head
    probs = np.full(canvas.shape, 0.9, np.float32)
    holder = BrainCanvas(slice(0, 64), slice(0, 64), 1, brain[:, 0])
    info, marked, lost = restrict_to_brain(probs, holder, canvas, 0.5, (1.0, 1.0), 5.0, 3.0, model)
    assert not info.applied and info.removed_ml == 0.0 and marked.size == 0 and lost.shape[0] == 0
    assert f"< {MIN_BRAIN_SHARE:.0%}" in info.reason and "not trusted" in caplog.text
    assert np.all(probs == np.float32(0.9))


def test_models_are_used_only_for_their_task(tiny_model_dir, tiny_brain_model_dir):
    with pytest.raises(ModelFileError, match="is a lesion model, not a brain-mask model"):
        Segmenter(str(tiny_model_dir), device="cpu", brain_model=str(tiny_model_dir))
    with pytest.raises(ModelFileError, match="is a brain model, not a lesion model"):
        Segmenter(str(tiny_brain_model_dir), device="cpu", brain_model=None)


def test_segmenter_removes_lesion_probability_outside_the_brain_only(tiny_model_dir, tiny_brain_model_dir):
    """End to end on the input's grid: a brain network that calls the left half of every canvas
    brain leaves the left half's probabilities exactly as without a brain mask and zeroes the
    right half beyond the margin. (The lesion network sees the head's window here, as without a
    brain mask, so that "as without" is exact; the brain's window: the next test.)"""
    image = synthetic_flair(size=(64, 64, 6), spacing=(1.0, 1.0, 5.0))
    plain = Segmenter(str(tiny_model_dir), device="cpu", brain_model=None).segment(image)
    masked = Segmenter(str(tiny_model_dir), device="cpu", brain_model=str(tiny_brain_model_dir),
                       brain_margin_mm=3.0, brain_context_px=None)
    canvas_cols = {}

    def left_half_is_brain(batch: np.ndarray) -> np.ndarray:
        canvas_cols["n"] = batch.shape[-1]
        return _left_half_is_brain(batch)

    masked.brain_network = left_half_is_brain
    result = masked.segment(image, threshold=0.4)  # the random network's probabilities are ~0.43
    assert result.brain_mask is not None and result.brain_mask.applied
    a = sitk.GetArrayFromImage(plain.probabilities)  # [z, y, x]; x runs right to left in LPS? see below
    b = sitk.GetArrayFromImage(result.probabilities)
    # which native columns are the canvas's left half depends on the head window; compare halves
    differs = np.any(a != b, axis=(0, 1))
    kept = np.all(a == b, axis=(0, 1))
    assert kept.sum() >= 24 and differs.sum() >= 16  # a band of columns kept, the far side changed
    assert np.all(b[..., differs] <= a[..., differs])  # only ever lowered
    assert np.count_nonzero(b[..., ~kept]) < np.count_nonzero(a[..., ~kept])
    # the summary's removed volume is exactly the mask difference on the input's grid
    t = result.threshold
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000
    assert np.count_nonzero((a >= t) & (b < t)) > 0
    assert result.brain_mask.removed_ml == pytest.approx(np.count_nonzero((a >= t) & (b < t)) * voxel_ml)
    assert canvas_cols["n"] % 16 == 0  # ran on the lesion network's head window


def _left_half_is_brain(batch: np.ndarray) -> np.ndarray:
    logits = np.full(batch.shape, -5.0, np.float32)
    logits[..., : batch.shape[-1] // 2] = 5.0
    return logits


@pytest.mark.parametrize("radius", [1, 2, 3, 4, 6])
def test_grow_in_plane_is_simpleitks_ball_dilation(radius):
    from deepwml.brain_mask import grow_in_plane

    rng = np.random.default_rng(radius)
    mask = rng.random((3, 40, 36)) > 0.97
    mask[1, 10:25, 5:20] = True
    mask[2, 0, :] = True  # touching the border
    expected = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.GetImageFromArray(mask.astype(np.uint8)),
                                                        [radius, radius, 0], sitk.sitkBall)) > 0
    assert np.array_equal(grow_in_plane(mask, radius), expected)


def test_lesion_network_sees_only_the_brains_window_and_keeps_what_the_mask_keeps(tiny_model_dir,
                                                                                 tiny_brain_model_dir):
    """With the brain mask applied, the lesion network runs on the brain's window (brain + margin
    + context), not the head's: a network that looks at one pixel at a time then gives exactly the
    probabilities of the head's window, and every batch it gets is narrower."""
    image = synthetic_flair(size=(64, 64, 6), spacing=(1.0, 1.0, 5.0))
    results, widths = {}, {}
    for context in (None, 16):
        seg = Segmenter(str(tiny_model_dir), device="cpu", brain_model=str(tiny_brain_model_dir),
                        brain_margin_mm=3.0, brain_context_px=context)
        seen = widths[context] = []

        def pointwise(batch: np.ndarray, seen: list = seen) -> np.ndarray:
            seen.append(batch.shape[-1])
            return (4.0 * (batch - 1.0)).astype(np.float32)

        seg.network, seg.brain_network = pointwise, _left_half_is_brain
        results[context] = seg.segment(image, threshold=0.5)
    head, brain = results[None], results[16]
    assert brain.brain_mask.applied and head.brain_mask.applied
    assert np.array_equal(sitk.GetArrayFromImage(head.probabilities), sitk.GetArrayFromImage(brain.probabilities))
    assert np.count_nonzero(sitk.GetArrayFromImage(brain.mask)) > 0
    assert max(widths[16]) < min(widths[None]) and all(w % 16 == 0 for w in widths[16])
    assert brain.brain_mask.removed_ml <= head.brain_mask.removed_ml


def test_untrusted_brain_mask_leaves_the_head_window_to_the_lesion_network(tiny_model_dir, tiny_brain_model_dir):
    """A brain mask that will not be applied (it covers nothing) must not shrink what the lesion
    network sees: the probabilities are exactly those without a brain mask."""
    image = synthetic_flair(size=(64, 64, 6), spacing=(1.0, 1.0, 5.0))
    plain = Segmenter(str(tiny_model_dir), device="cpu", brain_model=None).segment(image)
    seg = Segmenter(str(tiny_model_dir), device="cpu", brain_model=str(tiny_brain_model_dir))
    seg.brain_network = lambda batch: np.full(batch.shape, -5.0, np.float32)
    result = seg.segment(image)
    assert not result.brain_mask.applied
    assert np.array_equal(sitk.GetArrayFromImage(plain.probabilities), sitk.GetArrayFromImage(result.probabilities))


def test_lesion_window_skips_slices_without_brain_and_keeps_context_around_the_region():
    from deepwml.brain_mask import lesion_window

    canvas = np.zeros((4, 1, 128, 128), np.float32)
    canvas[1:3, 0, 8:120, 8:120] = 1.0  # the head, in slices 1 and 2
    holder = BrainCanvas.empty(4, slice(0, 128), slice(0, 128), 128, block=2)
    holder.mask[1, 10:50, 10:50] = True  # canvas rows 20-99, cols 20-99
    holder.mask[2, 12:48, 14:52] = True  # canvas rows 24-95, cols 28-103
    where = lesion_window(holder, canvas, margin_px=1.0, divisor=16, context=4)
    assert where is not None
    slices, rows, cols = where
    assert slices.tolist() == [1, 2]  # no brain, no lesion network
    # on the head window's grid (here 0-128), so the network's poolings see the same blocks
    assert rows.start % 16 == 0 and cols.start % 16 == 0
    assert (rows.stop - rows.start) % 16 == 0 and (cols.stop - cols.start) % 16 == 0
    # brain + 1 pixel of margin (2 canvas pixels) + 4 of context on every side, less than the head's window
    assert rows.start <= 20 - 2 - 4 and rows.stop >= 100 + 2 + 4 and cols.start <= 20 - 2 - 4 and cols.stop >= 104 + 2 + 4
    assert rows.stop - rows.start < 128 and cols.stop - cols.start < 128
    # a head window starting at 8: the brain's window starts on its grid and stays inside it
    _, rows8, cols8 = lesion_window(BrainCanvas(slice(8, 120), slice(8, 120), 2, holder.mask[:, 4:60, 4:60]),
                                    canvas, 1.0, 16, 4)
    assert rows8.start % 16 == 8 and cols8.start % 16 == 8 and rows8.stop <= 120 and cols8.stop <= 120
    holder.mask[:] = False
    holder.mask[1, 20, 25] = True  # a speck: below MIN_BRAIN_SHARE, the mask will not be applied
    assert lesion_window(BrainCanvas(holder.rows, holder.cols, 2, holder.mask), canvas, 1.0, 16, 8) is None


def test_cli_summary_records_the_brain_mask_and_the_option_turns_it_off(phantom_flair, tiny_model_dir,
                                                                        tiny_brain_model_dir, tmp_path):
    assert main(["segment", str(phantom_flair), "-o", str(tmp_path / "on"), "--model", str(tiny_model_dir),
                 "--brain-model", str(tiny_brain_model_dir), "--brain-margin-mm", "4", "-q"]) == 0
    assert main(["segment", str(phantom_flair), "-o", str(tmp_path / "off"), "--model", str(tiny_model_dir),
                 "--no-brain-mask", "-q"]) == 0
    on = json.loads((tmp_path / "on" / "flair.summary.json").read_text())
    off = json.loads((tmp_path / "off" / "flair.summary.json").read_text())
    assert off["brain_mask"] is None
    entry = on["brain_mask"]
    assert entry["model"] == "tiny-brain@0.0.1" and entry["margin_mm"] == 4.0
    assert entry["ran"]["file"] == "model.safetensors"  # no ONNX export: PyTorch ran its weights
    assert entry["sha256"] == json.loads((tiny_brain_model_dir / "model.json").read_text())["weights_sha256"]
    assert entry["applied"] in (True, False) and entry["brain_ml"] >= 0.0
    if entry["applied"]:
        assert on["total_volume_ml"] <= off["total_volume_ml"] + 1e-6


def test_bundled_brain_model_finds_the_phantom_brain(phantom_flair, tmp_path):
    """The shipped brain-mask network on a phantom head with skull and scalp (not a training
    case: phantoms are one template brain, the network was trained on real-anatomy heads)."""
    model = load_brain_model()
    assert model.card["task"] == "brain" and model.path.parent == BRAIN_MODEL_DIR
    assert "synthetic" in model.card["notes"] and "no real scan" in model.card["notes"]
    result = Segmenter(device="cpu").segment(sitk.ReadImage(str(phantom_flair)))
    info = result.brain_mask
    assert info is not None and info.applied, info
    assert 300.0 < info.brain_ml < 2000.0, info  # a brain within the scanned slices, not the head


def test_bundled_brain_model_onnx_graph_reproduces_its_weights():
    from deepwml.onnx_backend import OnnxNetwork, check_reproduces_weights, onnx_file_of

    model = load_model(BRAIN_MODEL_DIR, framework="numpy")
    path = onnx_file_of(model)
    assert path is not None
    assert check_reproduces_weights(OnnxNetwork(path, model.config.divisor), model, path) < 1e-3



def test_bundled_brain_model_runs_its_int8_graph_beside_an_int8_lesion_network():
    """--precision int8 runs the brain model's int8 graph too (the cold start); float32 its
    float32 graph; the summary names the file that ran."""
    from deepwml.model_files import sha256_of

    model = load_model(BRAIN_MODEL_DIR, framework="numpy")
    assert "no real scan" in model.card["onnx_int8"]["calibration"]["data"]
    int8 = Segmenter(device="cpu", precision="int8")
    f32 = Segmenter(device="cpu")
    assert int8.brain_ran_file == {"file": "model.int8.onnx", "sha256": sha256_of(BRAIN_MODEL_DIR / "model.int8.onnx")}
    assert f32.brain_ran_file["file"] == "model.onnx"
    image = synthetic_flair(size=(96, 96, 8), spacing=(2.0, 2.0, 5.0))
    assert int8.segment(image).brain_mask_summary()["ran"] == int8.brain_ran_file


def test_cohort_settings_carry_the_brain_mask_setting():
    from deepwml.cohort import CohortSettings

    on, off = CohortSettings(), CohortSettings(brain_model=None)
    assert on.fingerprint(0.8)["brain_mask"] is True and off.fingerprint(0.8)["brain_mask"] is False
    assert "brain_model" not in on.fingerprint(0.8)  # a folder path differs between machines
    assert on.segmenter_key() != off.segmenter_key()


def test_input_pool_network_matches_its_numpy_reference_onnx_graph_and_card(tmp_path):
    """input_pool=2 (the brain-mask model's half resolution): PyTorch, the numpy float64
    reference and the exported ONNX graph compute the same logits; the card round-trips it;
    lesion cards (input_pool 1) do not carry the key."""
    from deepwml.architecture import reference_logits
    from deepwml.onnx_backend import OnnxNetwork, check_reproduces_weights, export_onnx, onnx_file_of

    torch.manual_seed(2)
    net = UNet2D(UNetConfig(base_channels=4, input_pool=2)).eval()
    assert net.config.divisor == 32
    x = torch.rand(2, 1, 64, 96) * 2
    with torch.no_grad():
        logits = net(x).numpy()
    assert logits.shape == (2, 1, 64, 96)
    assert np.array_equal(logits[..., ::2, ::2], logits[..., 1::2, 1::2])  # repeated back, nearest
    reference = reference_logits({k: v.numpy() for k, v in net.state_dict().items()}, net.config, x.numpy())
    assert np.abs(logits - reference).max() < 1e-5
    save_model(net, ModelCard("pooled", "0.0.1", net.config, task="brain"), tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["architecture"]["input_pool"] == 2
    assert "input_pool" not in UNetConfig(base_channels=4).to_dict()
    path = export_onnx(load_model(tmp_path))
    model = load_model(tmp_path, framework="numpy")
    assert model.config.input_pool == 2 and onnx_file_of(model) == path
    assert check_reproduces_weights(OnnxNetwork(path, 32), model, path) < 1e-4


def test_training_refuses_a_crop_the_pooled_network_cannot_take(tmp_path, phantom_set):
    from deepwml.errors import DeepWMLError
    from deepwml.training.trainer import TrainConfig, train

    config = TrainConfig(epochs=1, base_channels=4, crop=48, input_pool=2, max_steps_per_epoch=1, device="cpu")
    with pytest.raises(DeepWMLError, match="not a multiple of this network's divisor 32"):
        train(phantom_set, tmp_path / "run", config, progress=False)


def test_demo_reports_the_brain_mask(tmp_path, capsys):
    """``make demo`` (the README's first command) says what the brain mask did and which cautions apply."""
    from deepwml.demo import main as demo

    assert demo([str(tmp_path / "demo"), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("brain mask: deepwml-synth-brain8@1.0.0, ")
    summary = json.loads((tmp_path / "demo" / "demo_flair.summary.json").read_text())
    assert summary["brain_mask"]["applied"] and f"{summary['brain_mask']['brain_ml']:.0f} ml of brain" in lines[-2]
    # and the result's cautions (deepwml.known_limits): none apply to this thick, light phantom
    assert summary["cautions"] == [] and lines[-1].startswith("cautions: none")


def test_fine_tuning_across_tasks_is_refused(tmp_path, phantom_set):
    from deepwml.training.trainer import TrainConfig, train

    config = TrainConfig(epochs=1, crop=64, max_steps_per_epoch=1, device="cpu", init="bundled", task="brain")
    with pytest.raises(ModelFileError, match="is a lesion model; a brain model cannot be fine-tuned from it"):
        train(phantom_set, tmp_path / "run", config, progress=False)


def test_brain_mask_candidates_rule_passes_a_better_mask_and_fails_each_criterion_on_its_own(monkeypatch):
    """benchmarks/brain_mask_candidates.py (experiment 47's rule) on made-up rows: a candidate that is
    better everywhere passes; spoiling one figure at a time fails exactly that criterion."""
    import importlib.util

    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))  # it imports a sibling script, as when run from there
    script = benchmarks / "brain_mask_candidates.py"
    spec = importlib.util.spec_from_file_location("brain_mask_candidates", script)
    rule = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rule)

    def rows(excess, outside, lost, brain_dice, lesion_dice, free_ml):
        out = {f"l{i}": {"excess3_ml": excess, "pred_outside3_ml": outside, "lesion_outside_ml": lost, "dice": brain_dice,
                         "lesion_ml": 5.0, "lesion_dice": lesion_dice + 0.01 * i, "pred_ml": 4.0} for i in range(20)}
        out["free"] = {"excess3_ml": excess, "pred_outside3_ml": 0.0, "lesion_outside_ml": 0.0, "dice": brain_dice,
                       "lesion_ml": 0.0, "lesion_dice": "", "pred_ml": free_ml}
        return out

    bundled = rows(6.0, 0.2, 0.1, 0.946, 0.60, 2.0)
    better = dict(excess=4.0, outside=0.05, lost=0.1, brain_dice=0.950, lesion_dice=0.60, free_ml=1.9)
    assert all(ok for _, ok in rule.criteria(bundled, rows(**better)).values())
    for key, spoiled in (("a", dict(excess=5.0)), ("b", dict(outside=0.3)), ("c", dict(lost=0.2)),
                         ("d", dict(brain_dice=0.94)), ("e", dict(lesion_dice=0.59)), ("e", dict(free_ml=2.5))):
        verdicts = rule.criteria(bundled, rows(**{**better, **spoiled}))
        assert [k for k, (_, ok) in verdicts.items() if not ok] == [key], (spoiled, verdicts)
