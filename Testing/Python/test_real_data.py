"""Real FLAIR from ../shared/data (evaluation only): end to end, report content, number floors.

The data live outside the repository at ``<repo>/../shared/data`` (CI provides them there);
without that folder these tests are skipped. Nothing here trains or tunes on them. The
floors for the bundled model are in ``real_data_floors.json`` (one place): raise them when
the model improves.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from deepwml.cli import main
from deepwml.evaluation.realdata import write_real_manifests
from deepwml.evaluation.report import evaluate
from deepwml.image_io import read_image

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
FLOORS = json.loads((Path(__file__).with_name("real_data_floors.json")).read_text(encoding="utf-8"))
WHOLE_HEAD_2D = DATA / "lesjak2016-ms-longitudinal-raw" / "patient01" / "study1_FLAIR.nii.gz"
WHOLE_HEAD_3D = DATA / "rorden-synthsr-flair3d" / "FLAIR.nii.gz"
CASE = "patient26"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent "
                                                          "(CI provides ../shared/data)")


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
            and np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection()))


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_whole_head_2d_scan_segment_and_sanity_report(tmp_path):
    """A routine thick-slice whole-head FLAIR through ``segment`` and ``sanity``."""
    floors = FLOORS["lesjak2016_patient01_study1"]
    flair = read_image(WHOLE_HEAD_2D)
    assert main(["segment", str(WHOLE_HEAD_2D), "-o", str(tmp_path / "seg"), "--labelmap",
                 "--backend", "onnx", "-q"]) == 0
    labelmap = sitk.ReadImage(str(tmp_path / "seg" / "study1_FLAIR_wmh.nii.gz"))
    assert same_grid(labelmap, flair)
    summary = json.loads((tmp_path / "seg" / "study1_FLAIR.summary.json").read_text(encoding="utf-8"))
    assert summary["backend"] == "onnx" and summary["slab_mm"] == 0.0  # 4 mm slices: never slabbed
    assert summary["total_volume_ml"] <= floors["pred_ml_max"]

    assert main(["sanity", str(WHOLE_HEAD_2D), "-o", str(tmp_path / "sanity"), "-q"]) == 0
    row = rows(tmp_path / "sanity" / "sanity.csv")[0]
    # the sanity table rounds to 3 decimals: a 0.38 ml load can differ from the summary by 0.0005
    assert float(row["pred_ml"]) == pytest.approx(summary["total_volume_ml"], rel=1e-3, abs=5e-4)
    assert int(row["lesions"]) == summary["lesion_count"]
    assert floors["brain_ml_range"][0] <= float(row["brain_ml"]) <= floors["brain_ml_range"][1]
    assert float(row["outside_ml"]) <= floors["outside_ml_max"]
    # what it marks is hyperintense against the scan's own white matter, not normal-looking white matter
    assert float(row["marked_over_wm"]) >= floors["marked_over_wm_min"], row["marked_over_wm"]
    # the segmenter's own brain mask agrees with the registration mask's brain volume
    assert summary["brain_mask"]["applied"] and float(row["net_brain_ml"]) == pytest.approx(float(row["brain_ml"]),
                                                                                            rel=0.1)
    for name in ("study1_FLAIR_brain.nii.gz", "study1_FLAIR_wmh.nii.gz"):
        assert same_grid(sitk.ReadImage(str(tmp_path / "sanity" / "masks" / name)), flair)
    page = (tmp_path / "sanity" / "sanity.html").read_text(encoding="utf-8")
    for part in ("study1_FLAIR", "outside_ml", "marked_over_wm", "3 mm", "brain mask", "data:image/png;base64"):
        assert part in page
    assert (tmp_path / "sanity" / "sheets" / "study1_FLAIR.png").stat().st_size > 10_000


@pytest.mark.parametrize("entry", ["rorden_flair3d", "rorden_flair3d_every_slice"])
def test_near_healthy_3d_head_stays_under_its_ceiling(tmp_path, entry):
    """The 1 mm, uint8, oblique whole-head 3D FLAIR, as 3 mm slabs and every slice (the default, and the only way a
    thin-slice model sees it): geometry kept, false positives bounded, and nothing left outside the brain (the brain
    mask's job; the registration mask of ``sanity`` judges, not the segmenter's own)."""
    ceiling = FLOORS[entry]
    assert main(["sanity", str(WHOLE_HEAD_3D), "-o", str(tmp_path), "--thin-slab-mm", str(ceiling["thin_slab_mm"]),
                 "-q"]) == 0
    assert same_grid(sitk.ReadImage(str(tmp_path / "masks" / "FLAIR_wmh.nii.gz")), read_image(WHOLE_HEAD_3D))
    row = rows(tmp_path / "sanity.csv")[0]
    assert float(row["slab_mm"]) == ceiling["thin_slab_mm"]
    assert float(row["pred_ml"]) <= ceiling["pred_ml_max"], row["pred_ml"]
    assert float(row["outside_ml"]) <= ceiling["outside_ml_max"], row["outside_ml"]
    assert float(row["marked_over_wm"]) >= ceiling["marked_over_wm_min"], row["marked_over_wm"]
    low, high = ceiling["net_brain_ml_range"]
    assert low <= float(row["net_brain_ml"]) <= high and float(row["removed_ml"]) > 0.0


@pytest.fixture(scope="module")
def lesjak_one_case(tmp_path_factory) -> dict[str, Path]:
    """Manifests (native and 5 mm) for one Lesjak 2017 case, written by ``write_real_manifests``."""
    out = tmp_path_factory.mktemp("lesjak")
    # a relative data path (as in the README's commands) must still give usable absolute paths
    manifests = write_real_manifests("lesjak2017", out, Path(os.path.relpath(DATA)), reslice_mm=(5.0,),
                                     progress=False)
    picked = {}
    for manifest in manifests:
        kept = [r for r in rows(manifest) if r["case"] == CASE]
        one = manifest.with_name("one_case.csv")
        with open(one, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(kept[0]))
            writer.writeheader()
            writer.writerows(kept)
        picked[manifest.parent.name.split("-")[-1]] = one
    return picked


def test_lesjak_resliced_geometry_and_label_volume(lesjak_one_case):
    native_row = rows(lesjak_one_case["native"])[0]
    thick_row = rows(lesjak_one_case["5mm"])[0]
    assert Path(native_row["flair"]).resolve().is_relative_to(DATA.resolve())  # read where they lie, never copied
    base = lesjak_one_case["5mm"].parent
    thin, thick = read_image(native_row["flair"]), read_image(base / thick_row["flair"])
    assert thick.GetSpacing() == pytest.approx((1.0, 1.0, 5.0)) and thick.GetSize() == (182, 218, 36)
    assert thick.GetDirection() == pytest.approx(thin.GetDirection())
    # 182 slices = 1 dropped + 36 slabs of 5 + 1 dropped: the first slab's centre is thin slice 3
    assert thick.GetOrigin() == pytest.approx(thin.TransformIndexToPhysicalPoint((0, 0, 3)))
    label = read_image(base / thick_row["label"])
    assert same_grid(label, thick)
    thin_ml = float((sitk.GetArrayViewFromImage(read_image(native_row["label"])) > 0).sum()) / 1000
    thick_ml = float((sitk.GetArrayViewFromImage(label) > 0).sum()) * 5 / 1000
    assert thick_ml == pytest.approx(thin_ml, rel=0.15)  # partial-volume rule loses lesion edges only


@pytest.mark.parametrize("resolution", ["native", "5mm"])
def test_lesjak_evaluate_report_and_floors(lesjak_one_case, resolution, tmp_path):
    floors = FLOORS[f"lesjak2017_{CASE}_{resolution}"]
    report = evaluate(lesjak_one_case[resolution], tmp_path, device="cpu", progress=False,
                      thin_slab_mm=floors["thin_slab_mm"])
    page = report.read_text(encoding="utf-8")
    for part in ("Per case", CASE, "MICCAI", "lesion_f1", "slice_median_dice", "data:image/png;base64"):
        assert part in page, part
    assert (tmp_path / "cases" / f"{CASE}.png").stat().st_size > 10_000
    row = rows(tmp_path / "per_volume.csv")[0]
    assert float(row["slab_mm"]) == (floors["thin_slab_mm"] if resolution == "native" else 0.0)
    assert int(row["lesion_slices"]) > 0
    measured = {k: float(row[k]) for k in ("dice", "lesion_f1", "hd95_mm", "avd_percent")}
    assert measured["dice"] >= floors["dice_min"], measured
    assert measured["lesion_f1"] >= floors["lesion_f1_min"], measured


def test_tumour_scan_leaves_nothing_outside_the_brain(tmp_path):
    """The TCGA 5.5 mm spin-echo IR FLAIR with a large frontal tumour: the orbital-roof tissue the brain mask calls brain
    is not marked (0.40 ml outside the brain before the white-matter restriction, experiment 48)."""
    ceiling = FLOORS["tcga_fg6692_flair2d"]
    scan = sorted((DATA / "tcga-fg6692-flair2d").glob("*.nii.gz"))[0]
    assert main(["sanity", str(scan), "-o", str(tmp_path), "-q"]) == 0
    row = rows(tmp_path / "sanity.csv")[0]
    assert float(row["outside_ml"]) <= ceiling["outside_ml_max"], row["outside_ml"]
    assert float(row["pred_ml"]) <= ceiling["pred_ml_max"], row["pred_ml"]
