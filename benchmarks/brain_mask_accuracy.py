"""How good is the brain-mask network? (issue 13, the outside-the-brain target; README "Brain mask")

Two measurements of the segmenter's own brain mask (:mod:`deepwml.brain_mask`, the mask that
sets lesion probability to 0 outside the brain):

- ``--synthetic MANIFEST``: Dice and volume against the true brain of synthetic heads the brain
  network never saw (a manifest whose labels are brain masks: ``benchmarks/training_mix.py
  --brain-labels``), for the network's raw mask and the mask the segmenter uses (largest
  component, holes filled); also the share of the head it covers (the plausibility guard's
  quantity), the true lesion volume the lesion clipping would remove (``lesion_outside_ml``,
  farther than the default margin from the mask), and the mask's volume farther than 3 mm from
  the true brain (``excess3_ml``: skull base, orbits, face, scalp called brain; where a lesion
  mark would count as "outside the brain" in the issue's whole-head target). With ``--lesions``
  the product segmenter also runs on each head: its lesion Dice, the volume it marks
  (``pred_ml``) and what it marks farther than 3 mm from the true brain (``pred_outside3_ml``,
  the issue's "outside the brain" with a perfect yardstick; experiment 47).
- ``--real SCAN ...``: evaluation only, never tuning: agreement with the independent
  registration mask of ``deepwml sanity`` (MNI template registered to each scan).

    .venv/bin/python benchmarks/brain_mask_accuracy.py --synthetic work-data/wval-brain.csv -o OUT
    .venv/bin/python benchmarks/brain_mask_accuracy.py --synthetic work-data/wval-brain.csv --lesions --open 1 -o OUT
    .venv/bin/python benchmarks/brain_mask_accuracy.py --real ../shared/data/rorden-synthsr-flair3d/FLAIR.nii.gz -o OUT
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from deepwml.brain_mask import brain_share
from deepwml.defaults import DEFAULT_MARGIN_MM, OUTSIDE_TOLERANCE_MM
from deepwml.evaluation.brain_mask import brain_mask as registration_brain_mask
from deepwml.evaluation.brain_mask import outside_mask
from deepwml.evaluation.metrics import dice
from deepwml.image_io import load_flair
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.segmenter import Segmenter
from deepwml.training.manifest import read_manifest


def network_masks(segmenter: Segmenter, flair: sitk.Image) -> tuple[sitk.Image, sitk.Image, float]:
    """``(raw, used, share)``: the brain network's raw mask and the segmenter's mask (largest
    component, holes filled) on the input's grid, and the share of the head's canvas pixels the
    used mask covers (the plausibility guard's quantity)."""
    prepared = segmenter.prepare(flair)
    prepared.brain = segmenter.predict_brain(prepared.canvas)  # the lesion network is not needed here
    share = brain_share(prepared.brain.regions(0.0)[0], prepared.brain.block, prepared.canvas)
    return segmenter.brain_image(prepared, raw=True), segmenter.brain_image(prepared), share


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image) > 0


def opened_in_plane(radius: int):
    """A stand-in for :func:`deepwml.brain_mask.largest_component` that first opens the mask in-plane
    by a ball of ``radius`` pixels of the brain grid (experiment 47's candidate P: cut thin bridges
    to orbital or scalp tissue before the largest component is kept)."""
    from deepwml import brain_mask

    largest = brain_mask.largest_component

    def opened_then_largest(mask: np.ndarray) -> np.ndarray:
        image = sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8))
        opened = sitk.GetArrayFromImage(sitk.BinaryMorphologicalOpening(image, [radius, radius, 0], sitk.sitkBall,
                                                                        0, 1)) > 0
        return largest(opened if opened.any() else mask)

    return opened_then_largest


def lesion_figures(segmenter: Segmenter, flair: sitk.Image, truth: np.ndarray, beyond: np.ndarray,
                   voxel_ml: float) -> dict:
    """The product segmenter's lesion Dice against the true lesions ``truth`` (blank without any), marked
    volume and marks farther than ``deepwml sanity``'s tolerance (``OUTSIDE_TOLERANCE_MM``) from the true
    brain (``beyond``) on one synthetic head."""
    marks = sitk.GetArrayFromImage(segmenter.segment(flair).mask) > 0
    return {"lesion_dice": round(dice(truth, marks), 4) if truth.any() else "",
            "pred_ml": round(float(marks.sum()) * voxel_ml, 3),
            "pred_outside3_ml": round(float((marks & beyond).sum()) * voxel_ml, 3)}


def synthetic(segmenter: Segmenter, manifest: Path, lesions_too: bool = False) -> list[dict]:
    rows = []
    for case in tqdm(read_manifest(manifest), desc="synthetic heads", unit="head"):
        flair = load_flair(case.flair)
        truth_image = sitk.ReadImage(str(case.label)) > 0
        truth = sitk.GetArrayFromImage(truth_image) > 0
        beyond = outside_mask(truth_image, OUTSIDE_TOLERANCE_MM)
        lesion_path = case.label.with_name("label.nii.gz")
        lesions = sitk.GetArrayFromImage(sitk.ReadImage(str(lesion_path))) > 0 if lesion_path.exists() else None
        raw_image, used_image, share = network_masks(segmenter, flair)
        raw, used = array(raw_image), array(used_image)
        voxel_ml = voxel_volume_ml(flair)
        row = {"case": case.case, "disease": case.disease, "slices": flair.GetSize()[2],
               "slice_mm": round(flair.GetSpacing()[2], 2),
               "skull_stripped": int(np.count_nonzero(sitk.GetArrayViewFromImage(flair)) < 1.3 * truth.sum()),
               "truth_ml": round(truth.sum() * voxel_ml, 1), "net_ml": round(used.sum() * voxel_ml, 1),
               "dice_raw": round(dice(raw, truth), 4), "dice": round(dice(used, truth), 4), "share": round(share, 3),
               "excess3_ml": round(float((used & beyond).sum()) * voxel_ml, 2)}
        if lesions is not None:
            # true lesion farther than the default margin from the used mask (what clipping would wrongly remove)
            outside = outside_mask(used_image, DEFAULT_MARGIN_MM)
            row["lesion_ml"] = round(lesions.sum() * voxel_ml, 2)
            row["lesion_outside_ml"] = round(float((lesions & outside).sum()) * voxel_ml, 3)
            if lesions_too:
                row.update(lesion_figures(segmenter, flair, lesions, beyond, voxel_ml))
        rows.append(row)
    return rows


def real(segmenter: Segmenter, scans: list[Path]) -> list[dict]:
    rows = []
    for path in tqdm(scans, desc="real heads", unit="scan"):
        flair = load_flair(path)
        raw_image, used_image, share = network_masks(segmenter, flair)
        raw, used = array(raw_image), array(used_image)
        reference = sitk.GetArrayFromImage(registration_brain_mask(flair)) > 0
        voxel_ml = voxel_volume_ml(flair)
        rows.append({"scan": f"{path.parent.name}/{path.name}"[-60:], "slices": flair.GetSize()[2],
                     "registration_ml": round(reference.sum() * voxel_ml, 1), "net_ml": round(used.sum() * voxel_ml, 1),
                     "dice_raw": round(dice(raw, reference), 4), "dice": round(dice(used, reference), 4),
                     "share": round(share, 3)})
    return rows


def write(rows: list[dict], out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for key in ("dice_raw", "dice", "share", "excess3_ml"):
        values = [r[key] for r in rows if key in r]
        if not values:
            continue
        print(f"{name}: {key} median {statistics.median(values):.4f}, min {min(values):.4f}, max {max(values):.4f}")
    if "lesion_outside_ml" in fields:
        print(f"{name}: true lesion farther than {DEFAULT_MARGIN_MM:g} mm from the mask: total "
              f"{sum(r.get('lesion_outside_ml', 0) for r in rows):.3f} ml of {sum(r.get('lesion_ml', 0) for r in rows):.1f}")
    if "pred_outside3_ml" in fields:
        outside = [r["pred_outside3_ml"] for r in rows if "pred_outside3_ml" in r]
        print(f"{name}: lesion marks farther than {OUTSIDE_TOLERANCE_MM:g} mm from the true brain: total {sum(outside):.3f} ml, "
              f"{sum(v > 0.1 for v in outside)} of {len(outside)} heads over 0.1 ml")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path, help="manifest of synthetic heads labelled with their brain")
    parser.add_argument("--real", nargs="*", type=Path, default=[], help="real scans (evaluation only)")
    parser.add_argument("--brain-model", default="bundled")
    parser.add_argument("--precision", default="float32", choices=["float32", "int8"],
                        help="int8: the lesion network's int8 graph, and with it the brain model's (if it has one)")
    parser.add_argument("--lesions", action="store_true",
                        help="--synthetic: also run the lesion segmentation (Dice, marks beyond the true brain)")
    parser.add_argument("--open", type=int, default=0, metavar="PX",
                        help="open the brain mask in-plane by PX pixels of its grid before the largest component "
                             "(experiment 47's candidate P; not what the product does)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if args.open:
        from deepwml import brain_mask
        brain_mask.largest_component = opened_in_plane(args.open)
    segmenter = Segmenter(device="cpu", brain_model=args.brain_model, precision=args.precision)
    if args.synthetic:
        write(synthetic(segmenter, args.synthetic, args.lesions), args.output, "synthetic")
    if args.real:
        write(real(segmenter, args.real), args.output, "real")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
