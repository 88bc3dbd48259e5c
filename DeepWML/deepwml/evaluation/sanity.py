"""``deepwml sanity``: whole-head plausibility report for unlabelled scans.

Why: with no labels, the numbers a model cannot fake are where its lesions lie. Per scan:
predicted lesion volume and 3D lesion count, the predicted volume outside the brain (beyond
a stated tolerance around an independent brain mask, :mod:`.brain_mask`), the brain mask's
own volume (a check on the instrument: about 1.0-1.8 l for an adult brain), and a contact
sheet (:mod:`.contact_sheet`), all in one scrollable HTML page.
"""

from __future__ import annotations

import html
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import SimpleITK as sitk

from ..defaults import (DEFAULT_MARGIN_MM, DEFAULT_MESIAL_TEMPORAL_MODEL, DEFAULT_WHITE_MATTER_MODEL,
                        OUTSIDE_TOLERANCE_MM, THIN_SLAB_MM)
from ..errors import DeepWMLError, OutputExistsError
from ..image_io import load_flair
from ..lesion_summary import count_lesions, voxel_volume_ml
from ..output_files import write_csv, write_image_atomic
from ..pipeline import case_name
from ..segmenter import Segmenter
from ..slice_layout import plan_slices
from .brain_mask import brain_mask, outside_mask
from .case_overlays import file_stem
from .contact_sheet import plot_contact_sheet
from .mark_contrast import marked_over_white_matter
from .report_html import figure_tag, html_page, table_html

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ("scan", "slices", "slice_mm", "slab_mm", "model", "pred_ml", "lesions", "outside_ml",
                  "outside_percent", "marked_over_wm", "brain_ml", "net_brain_ml", "removed_ml", "segment_s",
                  "brain_mask_s")


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Scan names for files; parent folders are prefixed where names repeat
    (``patient01/study1_FLAIR`` and ``patient03/study1_FLAIR``)."""
    names = [case_name(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.parent.name}_{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def check_scan(path: Path, flair: sitk.Image, segmenter: Segmenter, tolerance_mm: float,
               out_dir: Path, name: str, step: int) -> dict[str, Any]:
    """Segment one scan, mask its brain, write its sheet and masks; return its summary row."""
    t0 = time.perf_counter()
    result = segmenter.segment(flair)
    segment_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    brain = brain_mask(flair)
    mask_s = time.perf_counter() - t1
    lesion = sitk.GetArrayFromImage(result.mask) > 0
    outside = outside_mask(brain, tolerance_mm)
    voxel_ml = voxel_volume_ml(flair)
    pred_ml = float(lesion.sum()) * voxel_ml
    outside_ml = float((lesion & outside).sum()) * voxel_ml
    write_image_atomic(result.mask, out_dir / "masks" / f"{name}_wmh.nii.gz")
    write_image_atomic(brain, out_dir / "masks" / f"{name}_brain.nii.gz")
    layout = plan_slices(flair)
    brain_arr = sitk.GetArrayViewFromImage(brain) > 0
    flair_arr = sitk.GetArrayViewFromImage(flair)
    contrast = marked_over_white_matter(flair_arr, brain_arr, lesion)
    stacks = [layout.to_slices(a) for a in (flair_arr, lesion, brain_arr, outside)]
    sheet = plot_contact_sheet(*stacks, layout.in_plane_spacing_mm, out_dir / "sheets" / f"{name}.png",
                               f"{name}: {pred_ml:.1f} ml predicted, {outside_ml:.1f} ml beyond "
                               f"{tolerance_mm:g} mm of the brain mask", step)
    return {"scan": name, "input": str(path), "slices": int(stacks[0].shape[0]),
            "slice_mm": round(layout.slice_thickness_mm, 3), "slab_mm": result.slab_mm,
            "model": result.model.model_id,  # the thin-slice model's on thin slices
            "pred_ml": round(pred_ml, 3), "lesions": count_lesions(lesion),
            "outside_ml": round(outside_ml, 3),
            "outside_percent": round(100.0 * outside_ml / pred_ml, 1) if pred_ml else 0.0,
            "marked_over_wm": round(contrast, 2) if contrast is not None else "",
            "brain_ml": round(float(brain_arr.sum()) * voxel_ml, 1),
            # the segmenter's own brain-mask network (not the registration mask above): its brain
            # and the lesion volume it removed; empty without one, or when it was not trusted
            "net_brain_ml": round(result.brain_mask.brain_ml, 1) if result.brain_mask else "",
            "removed_ml": (round(result.brain_mask.removed_ml, 3)
                           if result.brain_mask and result.brain_mask.applied else ""),
            "segment_s": round(segment_s, 2), "brain_mask_s": round(mask_s, 2), "sheet": str(sheet)}


def sanity_report(scans: Sequence[str | Path], out_dir: Path, model: str | None = None,
                  device: str = "auto", thin_slab_mm: float = THIN_SLAB_MM, precision: str = "auto",
                  tolerance_mm: float = OUTSIDE_TOLERANCE_MM, step: int = 0, overwrite: bool = False,
                  progress: bool = True, brain_model: str | None = "bundled",
                  brain_margin_mm: float = DEFAULT_MARGIN_MM, tta: bool | None = None,
                  thin_model: str | None = "auto", thin_slab_sliding: bool = False,
                  contrast_floor: Any = "card",
                  white_matter_model: str | None = DEFAULT_WHITE_MATTER_MODEL,
                  mesial_temporal_model: str | None = DEFAULT_MESIAL_TEMPORAL_MODEL) -> Path:
    """Check every scan and write ``sanity.html`` (+ CSV, JSON, sheets, masks); return the HTML.

    A scan that cannot be read is reported in the page and the others go on; if none can,
    the error is raised. ``brain_model``/``brain_margin_mm``: the segmenter's own brain mask
    (:mod:`deepwml.brain_mask`; None: off), independent of the registration mask this report
    measures with.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    report = out_dir / "sanity.html"
    if report.exists() and not overwrite:
        raise OutputExistsError(report, "already exists (pass --overwrite)")
    (out_dir / "sheets").mkdir(parents=True, exist_ok=True)
    paths = [Path(s) for s in scans]
    names = unique_names(paths)
    segmenter = Segmenter(model, device=device, precision=precision, thin_slab_mm=thin_slab_mm,
                          brain_model=brain_model, brain_margin_mm=brain_margin_mm, flip_tta=tta,
                          thin_model=thin_model, thin_slab_sliding=thin_slab_sliding,
                          contrast_floor=contrast_floor, white_matter_model=white_matter_model,
                          mesial_temporal_model=mesial_temporal_model)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for path, name in tqdm(list(zip(paths, map(file_stem, names))), desc="sanity", unit="scan",
                           disable=not progress):
        try:
            flair = load_flair(path)
        except DeepWMLError as err:
            if len(paths) == 1:
                raise
            failures.append({"scan": name, "error": str(err)})
            log.error("%s", err)
            continue
        rows.append(check_scan(path, flair, segmenter, tolerance_mm, out_dir, name, step))
    if not rows:
        raise DeepWMLError(None, f"no scan could be checked ({failures[0]['error']})")
    _write_outputs(out_dir, rows, failures, segmenter, tolerance_mm)
    return report


def _brain_note(segmenter: Segmenter) -> str:
    """The segmenter's own brain mask, told apart from the registration mask this report measures with."""
    note = html.escape(segmenter.brain_mask_setting())
    if segmenter.brain_model is None:
        return note
    return (f"{note} Its brain and the lesion volume it removed: <b>net_brain_ml</b>, <b>removed_ml</b>; "
            "outside_ml below is measured against the independent registration mask.")


def _write_outputs(out_dir: Path, rows: list[dict], failures: list[dict], segmenter: Segmenter,
                   tolerance_mm: float) -> None:
    table = [{k: r[k] for k in SUMMARY_FIELDS} for r in rows]
    write_csv(out_dir / "sanity.csv", [{**t, "input": r["input"]} for t, r in zip(table, rows)])
    summary = {"model": segmenter.model.model_id,
               "thin_model": segmenter.thin_model.model_id if segmenter.thin_model else None,
               "device": str(segmenter.device),
               "backend": segmenter.backend, "thin_slab_mm": segmenter.thin_slab_mm,
               "thin_slab_sliding": segmenter.thin_slab_sliding,
               "segmenter_brain_mask": (None if segmenter.brain_model is None else
                                        {"model": segmenter.brain_model.model_id,
                                         "margin_mm": segmenter.brain_margin_mm}),
               "outside_tolerance_mm": tolerance_mm, "scans": rows, "failures": failures}
    (out_dir / "sanity.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    sections = "\n".join(f"<h2 id='{html.escape(r['scan'])}'>{html.escape(r['scan'])}</h2>"
                         f"<p class='note'>{html.escape(r['input'])}</p>{figure_tag(Path(r['sheet']))}"
                         for r in rows)
    failed = (f"<h2>Not checked</h2>{table_html(failures)}" if failures else "")
    body = f"""
<p>Model <b>{html.escape(segmenter.model.model_id)}</b>, device {segmenter.device}, backend {segmenter.backend};
{html.escape(segmenter.describe_thin_slices())}
{html.escape(segmenter.describe_models())}
{_brain_note(segmenter)}
No labels: these are plausibility checks, not accuracy.</p>
<p><b>outside_ml</b>: predicted lesion farther than <b>{tolerance_mm:g} mm</b> from the brain mask (lesions
belong to the brain; the tolerance absorbs the mask's few-millimetre registration error). The brain
mask does not come from the model: the MNI ICBM152 2009a template is registered (affine, mutual
information) to each FLAIR and its brain mask warped onto the scan; <b>brain_ml</b> checks it
(an adult brain is about 1.0-1.8 l). <b>marked_over_wm</b>: the median intensity of the predicted lesion
over the scan's white-matter level (the mode of the brain's intensities above their median; empty when nothing
is marked). Lesions are brighter than white matter: marks near 1.0 are normal-looking white matter.</p>
<p class='note'>Sheets: every k-th acquisition slice; red outline = predicted lesion, yellow fill = predicted
lesion outside the brain tolerance, cyan outline = brain mask. Rows = posterior down, columns = patient's
left on the right (radiological view after reorientation).</p>
{table_html(table)}
{failed}
{sections}
<p class='note'>Files: sanity.csv, sanity.json, sheets/*.png, masks/*_wmh.nii.gz and *_brain.nii.gz
(on each scan's voxel grid).</p>
"""
    (out_dir / "sanity.html").write_text(html_page("DeepWML whole-head sanity report", body), encoding="utf-8")
