"""``deepwml consensus``: the paper's inter-rater rule before anything becomes ground truth.

For every case with two rater masks: Dice between them; cases below the threshold (0.85) are
listed for re-labelling and kept out of ground truth until they pass. Passing cases get a
consensus mask: STAPLE (SimpleITK, probability >= 0.5) by default, or intersection / union.
Outputs: ``consensus.csv`` (all pairs), ``relabel.csv``, ``consensus_manifest.csv`` (only
passing cases, ``label`` = consensus mask, usable by train and evaluate), ``consensus.html``
and ``interrater_dice.png``.
"""

from __future__ import annotations

import csv
import html
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ManifestError, OutputExistsError
from ..image_io import read_image
from ..output_folder import writes_output_folder
from ..labels import read_label
from ..lesion_summary import mask_volume_ml
from ..training.manifest import read_manifest
from .metrics import dice
from .report_html import figure_tag, html_page, table_html

log = logging.getLogger(__name__)


def consensus_mask(r1: sitk.Image, r2: sitk.Image, method: str) -> sitk.Image:
    if method == "intersection":
        return sitk.And(r1, r2)
    if method == "union":
        return sitk.Or(r1, r2)
    if method == "staple":
        prob = sitk.STAPLE([sitk.Cast(r1, sitk.sitkUInt8), sitk.Cast(r2, sitk.sitkUInt8)], 1.0)
        return sitk.Cast(prob >= 0.5, sitk.sitkUInt8)
    raise ValueError(f"unknown consensus method {method!r}")


@writes_output_folder("consensus")
def run_consensus(manifest: Path, out_dir: Path, threshold: float = 0.85, method: str = "staple",
                  overwrite: bool = False) -> Path:
    """Check every case's inter-rater Dice; return the HTML report path."""
    from tqdm import tqdm

    cases = read_manifest(manifest, need_labels=False)
    paired = [c for c in cases if c.rater1 is not None and c.rater2 is not None]
    if not paired:
        raise ManifestError(manifest, "has no case with both 'rater1' and 'rater2' masks")
    out_dir = Path(out_dir)
    report = out_dir / "consensus.html"
    if report.exists() and not overwrite:
        raise OutputExistsError(report, "already exists (pass --overwrite)")
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    rows = []
    for case in tqdm(paired, desc="consensus", unit="case"):
        r1_img = read_image(case.rater1)
        r1 = read_label(case.rater1, r1_img)
        r2 = read_label(case.rater2, r1_img)
        d = dice(r1, r2)
        if np.isnan(d):
            d = 1.0  # both raters found no lesion: they agree
        passed = d >= threshold
        row = {"case": case.case, "center": case.center, "disease": case.disease,
               "rater1_ml": round(mask_volume_ml(r1, r1_img), 4),
               "rater2_ml": round(mask_volume_ml(r2, r1_img), 4),
               "dice": round(float(d), 4), "status": "pass" if passed else "relabel", "consensus": ""}
        if passed:
            mask = consensus_mask(_like(r1, r1_img), _like(r2, r1_img), method)
            path = out_dir / "labels" / f"{case.case}_consensus.nii.gz"
            sitk.WriteImage(mask, str(path), True)
            row["consensus"] = str(path.relative_to(out_dir))
        else:  # never leave an earlier run's consensus mask for a case now sent back
            (out_dir / "labels" / f"{case.case}_consensus.nii.gz").unlink(missing_ok=True)
        rows.append(row)
    fields = list(rows[0])
    _write_csv(out_dir / "consensus.csv", rows, fields)
    _write_csv(out_dir / "relabel.csv", [r for r in rows if r["status"] == "relabel"], fields)
    # A manifest of the cases that may become ground truth.
    passing = {r["case"]: r["consensus"] for r in rows if r["status"] == "pass"}
    gt_rows = []
    for case in paired:
        if case.case in passing:
            gt_rows.append({"case": case.case, "patient": case.patient, "center": case.center,
                            "disease": case.disease, "flair": str(case.flair.resolve()),
                            "label": passing[case.case], **case.extra})
    if gt_rows:
        _write_csv(out_dir / "consensus_manifest.csv", gt_rows, list(gt_rows[0]))
    else:  # an earlier run's list would name cases this run sends back for re-labelling
        (out_dir / "consensus_manifest.csv").unlink(missing_ok=True)
    dices = np.array([r["dice"] for r in rows])
    png = out_dir / "interrater_dice.png"
    _plot_dice(dices, threshold, png)
    summary = (f"<p>{len(rows)} case(s) with two raters; consensus method: {html.escape(method)}; "
               f"threshold Dice &ge; {threshold}. <b>{int((dices < threshold).sum())}</b> case(s) need "
               f"re-labelling and are kept out of ground truth (<code>relabel.csv</code>); "
               f"{len(gt_rows)} passing case(s) are in <code>consensus_manifest.csv</code>. "
               f"Median inter-rater Dice {np.median(dices):.3f}.</p>")
    body = summary + figure_tag(png) + table_html(rows, fields)
    report.write_text(html_page("DeepWML inter-rater consensus", body), encoding="utf-8")
    return report


def _like(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(reference)
    return img


def _write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _plot_dice(dices: np.ndarray, threshold: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(dices, bins=np.linspace(0, 1, 41), color="tab:blue")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"re-label below {threshold}")
    ax.set(xlabel="inter-rater Dice", ylabel="cases", title="Inter-rater agreement")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
