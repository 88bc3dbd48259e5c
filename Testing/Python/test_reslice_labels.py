"""Thick-slab reslicing, thin-slab inference and label checks (fast, synthetic data)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import synthetic_flair
from deepwml.errors import DeepWMLError, LabelEncodingError, LabelGeometryError, OptionError
from deepwml.evaluation.case_overlays import pick_slices
from deepwml.evaluation.sanity import unique_names
from deepwml.labels import read_label
from deepwml.reslice import (average_slabs, interpolate_from_slabs, reslice_axial, slab_bounds,
                             slab_centres, sliding_slab_mean)
from deepwml.segmenter import Segmenter


def thin_volume(direction=None) -> sitk.Image:
    """A 1 mm 'isotropic' volume: what 3D FLAIR looks like to the segmenter."""
    return synthetic_flair(size=(40, 36, 12), spacing=(1.0, 1.0, 1.0), direction=direction,
                           origin=(-20.0, 10.0, -15.0))


def test_slab_bounds_regular_and_covering():
    assert slab_bounds(11, 3) == [(1, 4), (4, 7), (7, 10)]  # remainder split between the ends
    assert slab_bounds(11, 3, whole_only=False) == [(0, 3), (3, 6), (6, 9), (9, 11)]
    np.testing.assert_allclose(slab_centres([(1, 4), (4, 7)]), [2.0, 5.0])
    stack = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    np.testing.assert_allclose(average_slabs(stack, [(0, 3), (3, 6)])[:, 0, 0], [1.0, 4.0])


def test_interpolation_from_slabs_is_linear_between_centres_and_flat_beyond():
    bounds = slab_bounds(9, 3, whole_only=False)  # centres 1, 4, 7
    values = np.array([0.0, 3.0, 6.0], np.float32)[:, None]
    out = interpolate_from_slabs(values, bounds, 9)[:, 0]
    np.testing.assert_allclose(out, [0, 0, 1, 2, 3, 4, 5, 6, 6])
    np.testing.assert_allclose(interpolate_from_slabs(values[:1], [(0, 2)], 2)[:, 0], [0, 0])


@pytest.mark.parametrize("flipped", [False, True])
def test_reslice_geometry_and_values(flipped):
    direction = (1.0, 0, 0, 0, -1.0, 0, 0, 0, -1.0) if flipped else None
    img = thin_volume(direction)
    thick = reslice_axial(img, 5.0)
    assert thick.GetSize() == (40, 36, 2)
    assert thick.GetSpacing() == pytest.approx((1.0, 1.0, 5.0))
    assert thick.GetDirection() == img.GetDirection()
    # the origin is the centre of the first slab: the mean position of its thin slices
    centre = np.mean([img.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(1, 6)], axis=0)
    assert thick.GetOrigin() == pytest.approx(tuple(centre))
    arr, thin = sitk.GetArrayFromImage(thick), sitk.GetArrayFromImage(img)
    np.testing.assert_allclose(arr[1], thin[6:11].mean(0), atol=1e-3)  # 12 = 1 + 2 x 5 + 1


def test_resliced_label_is_the_slab_lesion_fraction():
    arr = np.zeros((6, 4, 4), np.uint8)
    arr[0:2, 0, 0] = 1  # 2 of 3 slices: lesion
    arr[3, 1, 1] = 1  # 1 of 3: not lesion
    label = sitk.GetImageFromArray(arr)
    thick = sitk.GetArrayFromImage(reslice_axial(label, 3.0, label=True))
    assert thick.dtype == np.uint8 and thick.shape == (2, 4, 4)
    assert thick[0, 0, 0] == 1 and thick[1, 1, 1] == 0 and thick.sum() == 1


def test_thin_slab_inference_stays_on_the_input_grid(tiny_model_dir):
    img = thin_volume()
    segmenter = Segmenter(str(tiny_model_dir), device="cpu", thin_slab_mm=3.0)
    slab = segmenter.segment(img)
    assert slab.slab_mm == 3.0
    for out in (slab.probabilities, slab.mask):
        assert out.GetSize() == img.GetSize() and out.GetOrigin() == img.GetOrigin()
        assert out.GetSpacing() == img.GetSpacing() and out.GetDirection() == img.GetDirection()
    # thick (2D) volumes are never slabbed
    assert segmenter.segment(synthetic_flair(size=(32, 24, 4))).slab_mm == 0.0
    with pytest.raises(OptionError, match="0 or more"):
        Segmenter(str(tiny_model_dir), device="cpu", thin_slab_mm=-1)


def test_sliding_slab_mean_is_the_centred_window_mean_fewer_at_the_ends():
    rng = np.random.default_rng(3)
    stack = rng.normal(100, 20, (9, 3, 4)).astype(np.float32)
    for per_slab in (3, 5):
        half = per_slab // 2
        expected = np.stack([stack[max(0, k - half):k + half + 1].mean(0, dtype=np.float64)
                             for k in range(len(stack))]).astype(np.float32)
        np.testing.assert_allclose(sliding_slab_mean(stack, per_slab), expected, rtol=1e-6)
        # along another axis too (the stack's slice axis is the caller's)
        np.testing.assert_allclose(sliding_slab_mean(np.moveaxis(stack, 0, 2), per_slab, axis=2),
                                   np.moveaxis(expected, 0, 2), rtol=1e-6)
    np.testing.assert_array_equal(sliding_slab_mean(stack, 1), stack)
    with pytest.raises(ValueError, match="odd"):
        sliding_slab_mean(stack, 4)


def test_sliding_slabs_see_every_thin_slice_through_its_own_slab(tiny_model_dir):
    """Sliding slabs = segmenting the volume whose every slice was replaced by its centred
    window mean (the construction the study measured), on the input's grid; thick volumes
    and consecutive slabs are unchanged by the option."""
    from deepwml.slice_layout import image_from_slices, plan_slices

    img = thin_volume()
    sliding = Segmenter(str(tiny_model_dir), device="cpu", thin_slab_mm=3.0, thin_slab_sliding=True)
    native = Segmenter(str(tiny_model_dir), device="cpu", thin_slab_mm=0.0)
    result = sliding.segment(img)
    assert result.slab_mm == 3.0 and result.slab_sliding
    assert result.probabilities.GetSize() == img.GetSize() and result.probabilities.GetOrigin() == img.GetOrigin()
    layout = plan_slices(img)
    averaged = image_from_slices(sliding_slab_mean(layout.to_slices(sitk.GetArrayFromImage(img)), 3), layout, img)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.probabilities),
                               sitk.GetArrayFromImage(native.segment(averaged).probabilities), atol=1e-6)
    assert "sliding 3 mm slab" in sliding.describe_thin_slices()
    thick = synthetic_flair(size=(32, 24, 4))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sliding.segment(thick).probabilities),
                                  sitk.GetArrayFromImage(native.segment(thick).probabilities))
    assert not sliding.segment(thick).slab_sliding


def test_one_kind_of_slab_at_a_time(tmp_path, capsys):
    from deepwml.cli import main

    flair = tmp_path / "thin.nii.gz"
    sitk.WriteImage(thin_volume(), str(flair))
    assert main(["segment", str(flair), "-o", str(tmp_path / "out"), "--thin-slab-mm", "3",
                 "--sliding-slab-mm", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give one" in err[0]


def write(tmp_path, arr, like: sitk.Image, name="label.nii.gz", **geometry) -> str:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(like)
    for key, value in geometry.items():
        getattr(img, f"Set{key}")(value)
    path = tmp_path / name
    sitk.WriteImage(img, str(path))
    return str(path)


def test_labels_of_other_geometry_are_refused(tmp_path):
    flair = synthetic_flair()
    mask = np.zeros(sitk.GetArrayFromImage(flair).shape, np.uint8)
    mask[5, 10:14, 10:14] = 1
    assert read_label(write(tmp_path, mask, flair), flair).sum() == 16
    shifted = write(tmp_path, mask, flair, "shifted.nii.gz", Origin=(-19.0, 10.0, 3.0))
    with pytest.raises(LabelGeometryError, match="origin"):
        read_label(shifted, flair)
    flipped = write(tmp_path, mask, flair, "flipped.nii.gz", Direction=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    with pytest.raises(LabelGeometryError, match="direction"):
        read_label(flipped, flair)
    spacing = write(tmp_path, mask, flair, "spacing.nii.gz", Spacing=(1.0, 1.0, 5.0))
    with pytest.raises(LabelGeometryError, match="spacing"):
        read_label(spacing, flair)


def test_labels_of_other_encoding_are_refused(tmp_path):
    flair = synthetic_flair()
    mask = np.zeros(sitk.GetArrayFromImage(flair).shape, np.uint8)
    mask[5, 10:14, 10:14] = 1
    mask[6, 10:12, 10:12] = 2
    classes = write(tmp_path, mask, flair)
    with pytest.raises(LabelEncodingError, match="several values.*label_value"):
        read_label(classes, flair)
    assert read_label(classes, flair, label_value=1).sum() == 16  # declared: fine
    prob = write(tmp_path, (mask > 0) * np.float32(0.7), flair, "prob.nii.gz")
    with pytest.raises(LabelEncodingError, match="non-integer"):
        read_label(prob, flair)
    binary255 = write(tmp_path, (mask > 0).astype(np.uint8) * 255, flair, "b255.nii.gz")
    assert read_label(binary255, flair).sum() == 20
    err = pytest.raises(LabelEncodingError, read_label, prob, flair).value
    assert isinstance(err, DeepWMLError) and "\n" not in str(err)


def test_case_overlay_slices_and_scan_names(tmp_path):
    truth = np.zeros((6, 8, 8), bool)
    pred = np.zeros_like(truth)
    truth[1, :2, :2] = truth[2, :3, :3] = True
    pred[4, :4, :4] = True  # false positives only here
    assert pick_slices(truth, pred, np.ones(6, bool)) == [1, 2, 4]
    assert pick_slices(np.zeros_like(truth), np.zeros_like(pred), np.ones(6, bool)) == [3]
    truth[5, :1, :1] = True
    assert pick_slices(truth, pred, np.ones(6, bool), count=3, min_gap=2) == [2, 4, 5]  # 1 is next to 2
    paths = [tmp_path / "p1" / "study1_FLAIR.nii.gz", tmp_path / "p2" / "study1_FLAIR.nii.gz",
             tmp_path / "FLAIR.nii.gz"]
    assert unique_names(paths) == ["p1_study1_FLAIR", "p2_study1_FLAIR", "FLAIR"]


def test_realdata_refuses_to_write_into_the_data_folder(tmp_path):
    from deepwml.evaluation.realdata import write_real_manifests

    with pytest.raises(DeepWMLError, match="inside the shared data folder"):
        write_real_manifests("lesjak2017", tmp_path / "out", data_root=tmp_path, progress=False)
    with pytest.raises(DeepWMLError, match="unknown real data set"):
        write_real_manifests("nope", tmp_path / "o", data_root=tmp_path, progress=False)


def test_cohort_settings_tell_sliding_slabs_apart_and_earlier_cohorts_still_resume():
    from deepwml.cohort import CohortSettings

    plain, sliding = CohortSettings(thin_slab_mm=3.0), CohortSettings(thin_slab_mm=3.0, thin_slab_sliding=True)
    assert "thin_slab_sliding" not in plain.fingerprint(0.8)  # the fingerprint of cohorts made before the option
    assert sliding.fingerprint(0.8)["thin_slab_sliding"] is True
    assert plain.segmenter_key() != sliding.segmenter_key()


def test_thin_slab_study_verdict_applies_the_sliding_rules_guards():
    """The study printed '3 mm sliding becomes the default' on 2026-12-01 although its rule had
    failed on the phantoms; the verdict now applies every criterion of the rule in force."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "thin_slab_study.py"
    spec = importlib.util.spec_from_file_location("thin_slab_study", script)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    modes = ["native", "3 mm slabs", "5 mm slabs", "3 mm sliding", "5 mm sliding"]
    medians = {"phantoms": dict(zip(modes, [0.848, 0.694, 0.602, 0.820, 0.770])),
               "synthetic": dict(zip(modes, [0.207, 0.264, 0.275, 0.390, 0.379]))}
    free = {"synthetic": dict(zip(modes, [1.92, 0.65, 0.70, 1.63, 2.12]))}
    assert study.verdict(medians, free, modes).startswith("rule: native (every slice) stays")
    medians["phantoms"]["3 mm sliding"] = 0.83
    assert study.verdict(medians, free, modes) == "rule: 3 mm sliding becomes the default"
    free["synthetic"]["3 mm sliding"] = 2.5
    assert "lesion-free" in study.verdict(medians, free, modes)
