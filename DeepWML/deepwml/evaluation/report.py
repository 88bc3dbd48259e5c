"""``deepwml evaluate``: the paper's whole evaluation in one run, plus MICCAI 2017 metrics.

Per-slice metrics are computed on the native grid along the acquisition axis. Rule for
which slices enter the per-slice medians (the paper does not say; we state ours): only
slices whose manual label has lesion (their lesion volume places them in a group G1-G5).
Slices without manual lesion are counted separately: "both empty" (agreement) and
"false-positive slices" (prediction without truth); every report states these counts.
Precision is undefined, and left out of its median, on lesion slices where the model
predicts nothing (those slices have Dice 0 and sensitivity 0 and stay in those medians).
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import DeepWMLError, OutputExistsError
from ..image_io import load_flair
from ..output_folder import writes_output_folder
from ..labels import read_label
from ..lesion_summary import mask_volume_ml
from ..model_files import read_card
from ..model_files import record_in_card as record_in_card_file
from ..defaults import DEFAULT_MARGIN_MM, DEFAULT_MESIAL_TEMPORAL_MODEL, DEFAULT_WHITE_MATTER_MODEL, THIN_SLAB_MM
from ..segmenter import Segmenter
from ..slice_layout import plan_slices
from ..training.manifest import Case, manifest_sha256, read_manifest
from ..training.split import cases_in, load_split, slice_selection
from .case_overlays import MAX_CASE_FIGURES, case_samples, plot_case
from .metrics import slice_metrics, volume_metrics
from .plots import plot_boxplots, plot_lv_groups, plot_overlays, plot_timings
from .report_html import figure_tag, html_page, table_html
from .stats import LV_GROUPS, compare_groups, lv_group

log = logging.getLogger(__name__)

METRICS = ("dice", "sensitivity", "precision")
VOLUME_METRICS = ("dice", "hd95_mm", "avd_percent", "lesion_recall", "lesion_f1", "far_fp_ml")


def _median(values: list[float]) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def _quartiles(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return "–"
    q1, q3 = np.percentile(v, [25, 75])
    return f"{q1:.2f}–{q3:.2f}"


def choose_cases(manifest: Path, cases: list[Case], model_card: dict, model_path: Path,
                 split: str) -> tuple[list[Case], dict | None, str]:
    """Which cases (and, with an image-level split, slices) to evaluate, and why."""
    if split == "all":
        return cases, None, "all cases of the manifest"
    split_path = Path(split) if split.endswith(".json") else model_path.parent.parent / "split.json"
    name = "test" if split == "auto" or split.endswith(".json") else split
    trained_on = model_card.get("training", {}).get("manifest_sha256")
    same_manifest = bool(trained_on) and trained_on == manifest_sha256(manifest)
    if split == "auto" and not same_manifest:
        return cases, None, ("all cases: the model was not trained on this manifest, so none of "
                             "its cases was seen in training")
    if not split_path.exists():
        raise DeepWMLError(split_path, f"split file not found; cannot select the '{name}' split "
                                       "(use --split all or pass the training run's split.json)")
    data = load_split(split_path, cases)
    return cases_in(data, cases, name), data, f"the '{name}' split of {split_path}"


@writes_output_folder("evaluate")
def evaluate(manifest: Path, out_dir: Path, model: str | None = None, device: str = "auto",
             precision: str = "auto", split: str = "auto", overwrite: bool = False, progress: bool = True,
             max_cases: int = 0, record_in_card: bool = False,
             thin_slab_mm: float = THIN_SLAB_MM, brain_model: str | None = "bundled",
             brain_margin_mm: float = DEFAULT_MARGIN_MM, tta: bool | None = None,
             thin_model: str | None = "auto", thin_slab_sliding: bool = False,
             contrast_floor: Any = "card",
             white_matter_model: str | None = DEFAULT_WHITE_MATTER_MODEL,
             mesial_temporal_model: str | None = DEFAULT_MESIAL_TEMPORAL_MODEL) -> Path:
    """Run the model on the selected cases and write the full report; return report.html.

    ``thin_slab_mm``: how thin-slice (< 2 mm) volumes are segmented; ``brain_model`` /
    ``brain_margin_mm``: the brain mask (None: off); ``tta``: average with the left-right
    flipped slice, as ``segment --tta`` (None: the default for the precision); ``contrast_floor``:
    the white-matter contrast floor ("card", None or a ContrastFloor); see :class:`Segmenter`."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    report = out_dir / "report.html"
    if report.exists() and not overwrite:
        raise OutputExistsError(report, "already exists (pass --overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = read_manifest(manifest)
    segmenter = Segmenter(model, device=device, precision=precision, thin_slab_mm=thin_slab_mm,
                          brain_model=brain_model, brain_margin_mm=brain_margin_mm, flip_tta=tta,
                          thin_model=thin_model, thin_slab_sliding=thin_slab_sliding,
                          contrast_floor=contrast_floor, white_matter_model=white_matter_model,
                          mesial_temporal_model=mesial_temporal_model)
    card, card_path = read_card(segmenter.model.path)
    selected, split_data, why = choose_cases(Path(manifest), cases, card, card_path, split)
    if max_cases:
        selected = selected[:max_cases]
    if not selected:
        raise DeepWMLError(manifest, "no case to evaluate in the chosen split")
    slice_rows: list[dict[str, Any]] = []
    volume_rows: list[dict[str, Any]] = []
    overlays: list[dict[str, Any]] = []
    case_views: list[list[dict[str, Any]]] = []
    counts = defaultdict(int)
    for case in tqdm(selected, desc="evaluate", unit="case", disable=not progress):
        flair = load_flair(case.flair)
        truth = read_label(case.label, flair, case.label_value)
        result = segmenter.segment(flair)
        pred = sitk.GetArrayFromImage(result.mask) > 0
        layout = plan_slices(flair)
        t_sl, p_sl = layout.to_slices(truth), layout.to_slices(pred)
        f_sl = layout.to_slices(sitk.GetArrayViewFromImage(flair))
        pixel_mm2 = float(np.prod(layout.in_plane_spacing_mm))
        keep = (slice_selection(split_data, case, "test", t_sl.shape[0]) if split_data and
                isinstance(split_data["assignment"][case.case], list) else np.ones(t_sl.shape[0], bool))
        best_slice, best_area = -1, 0
        first_row, fp_before = len(slice_rows), counts["false_positive_slices"]
        for i in np.nonzero(keep)[0]:
            t, p = t_sl[i], p_sl[i]
            counts["slices"] += 1
            if not t.any():
                counts["both_empty" if not p.any() else "false_positive_slices"] += 1
                continue
            counts["lesion_slices"] += 1
            m = slice_metrics(t, p)
            if math.isnan(m["precision"]):
                counts["precision_undefined"] += 1
            area = float(t.sum()) * pixel_mm2
            lv = area * layout.slice_thickness_mm / 1000.0
            slice_rows.append({"case": case.case, "center": case.center, "disease": case.disease,
                               "slice": int(i), "lesion_area_mm2": round(area, 2),
                               "lesion_volume_ml": round(lv, 5), "lv_group": lv_group(lv),
                               **{k: round(m[k], 5) if not math.isnan(m[k]) else math.nan for k in METRICS}})
            if t.sum() > best_area:
                best_slice, best_area = int(i), int(t.sum())
        truth_img = sitk.GetImageFromArray(truth.astype(np.uint8))
        truth_img.CopyInformation(flair)
        vm = volume_metrics(truth_img, result.mask)
        n_sl = t_sl.shape[0]
        volume_rows.append({"case": case.case, "center": case.center, "disease": case.disease,
                            "slices": n_sl, "truth_ml": round(mask_volume_ml(truth, flair), 4),
                            "pred_ml": round(mask_volume_ml(pred, flair), 4),
                            **{k: round(v, 5) if not math.isnan(v) else math.nan for k, v in vm.items()},
                            **_case_slice_summary(slice_rows[first_row:],
                                                  counts["false_positive_slices"] - fp_before),
                            "slab_mm": result.slab_mm,
                            "model": result.model.model_id,  # the thin-slice model's on thin slices
                            "network_s": round(result.timings_s["network"], 4),
                            "total_s": round(result.timings_s["total"], 4),
                            "s_per_slice": round(result.timings_s["total"] / n_sl, 5)})
        if best_slice >= 0 and sum(o["disease"] == case.disease for o in overlays) < 4:
            overlays.append({"case": case.case, "disease": case.disease, "slice": best_slice,
                             "image": np.array(f_sl[best_slice]), "truth": t_sl[best_slice].copy(),
                             "pred": p_sl[best_slice].copy()})
        if len(case_views) < MAX_CASE_FIGURES:
            case_views.append(case_samples(case.case, case.disease, f_sl, t_sl, p_sl, keep,
                                           layout.slice_thickness_mm))
    report, summary = _write_report(out_dir, slice_rows, volume_rows, overlays, dict(counts), why,
                                    segmenter, card, case_views)
    if record_in_card:
        record_in_card_file(card_path, "evaluation", {
            "data": f"{manifest} ({why})", "volumes": summary["volumes"], "counts": summary["counts"],
            "per_slice_median": {m: summary["overall"].get(f"median_{m}") for m in METRICS},
            "per_volume_median": {r["metric"]: r["median"] for r in summary["per_volume"]},
            "device": summary["device"], "flip_tta": segmenter.flip_tta,
            "contrast_floor": summary["contrast_floor"]})
    return report


def _case_slice_summary(case_rows: list[dict], fp_slices: int) -> dict[str, Any]:
    """Per-slice figures of one case: lesion slices, false-positive slices, medians."""
    return {"lesion_slices": len(case_rows), "fp_slices": fp_slices,
            **{f"slice_median_{m}": round(_median([r[m] for r in case_rows]), 4) for m in METRICS}}


def _table2(slice_rows: list[dict]) -> list[dict]:
    rows = []
    groups: list[tuple[str, str, list[dict]]] = []
    for disease in sorted({r["disease"] for r in slice_rows}):
        centers = sorted({r["center"] for r in slice_rows if r["disease"] == disease})
        for center in centers:
            groups.append((disease, center, [r for r in slice_rows if r["disease"] == disease and r["center"] == center]))
        groups.append((disease, "all centers", [r for r in slice_rows if r["disease"] == disease]))
    groups.append(("all", "all", slice_rows))
    for disease, center, members in groups:
        row = {"disease": disease, "center": center, "slices": len(members),
               "cases": len({r["case"] for r in members})}
        for m in METRICS:
            vals = [r[m] for r in members]
            row[f"median_{m}"] = round(_median(vals), 3)
            row[f"iqr_{m}"] = _quartiles(vals)
        rows.append(row)
    return rows


def _markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    fields = list(rows[0])
    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[f]) for f in fields) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _stats_rows(statistics: dict) -> list[dict]:
    rows = []
    for factor, per_metric in statistics.items():
        for metric, res in per_metric.items():
            rows.append({"factor": factor, "metric": metric, "kruskal_H": res["kruskal"]["H"],
                         "kruskal_p": res["kruskal"]["p"],
                         "significant_pairs (Bonferroni p)": "; ".join(
                             f"{p['a']} vs {p['b']}: {p['p_bonferroni']:.2g}" for p in res["pairwise"]
                             if p["p_bonferroni"] < 0.05) or "–",
                         "shapiro_p": "; ".join(f"{g}: {s['p']:.2g}" for g, s in res["shapiro"].items()
                                                if not math.isnan(s["p"])) or "–"})
    return rows


def _case_cap_note(volume_rows: list[dict]) -> str:
    if len(volume_rows) <= MAX_CASE_FIGURES:
        return ""
    return f" Figures for the first {MAX_CASE_FIGURES} of {len(volume_rows)} cases."


def _case_sections(folder: Path, volume_rows: list[dict], case_views: list[list[dict]]) -> str:
    """One heading, metrics row and overlay figure per case (HTML)."""
    parts = []
    for row, samples in zip(volume_rows, case_views):
        png = plot_case(samples, folder)
        parts.append(f"<h3>{html.escape(str(row['case']))}</h3>{table_html([row])}{figure_tag(png)}")
    return "\n".join(parts)


def _write_report(out_dir: Path, slice_rows: list[dict], volume_rows: list[dict],
                  overlays: list[dict], counts: dict, why: str, segmenter: Segmenter,
                  card: dict, case_views: list[list[dict]]) -> tuple[Path, dict]:
    """Write every table, figure and the HTML; return the report path and the summary."""
    table2 = _table2(slice_rows)
    statistics = {
        "disease": {m: compare_groups({d: [r[m] for r in slice_rows if r["disease"] == d]
                                       for d in sorted({r["disease"] for r in slice_rows})}) for m in METRICS},
        "lesion volume group": {m: compare_groups({g: [r[m] for r in slice_rows if r["lv_group"] == g]
                                                   for g in LV_GROUPS}) for m in METRICS},
    }
    _write_csv(out_dir / "per_slice.csv", slice_rows)
    _write_csv(out_dir / "per_volume.csv", volume_rows)
    _write_csv(out_dir / "table2.csv", table2)
    (out_dir / "table2.md").write_text(_markdown(table2), encoding="utf-8")
    (out_dir / "statistics.json").write_text(json.dumps(statistics, indent=1, default=float) + "\n", encoding="utf-8")
    stats_rows = _stats_rows(statistics)
    (out_dir / "statistics.md").write_text(_markdown(stats_rows), encoding="utf-8")
    volume_summary = [{"metric": m, "median": round(_median([r[m] for r in volume_rows]), 4),
                       "iqr": _quartiles([r[m] for r in volume_rows]),
                       "cases": int(np.isfinite(np.asarray([r[m] for r in volume_rows], float)).sum())}
                      for m in VOLUME_METRICS]
    _write_csv(out_dir / "per_volume_summary.csv", volume_summary)
    figures = {
        "fig3_boxplots.png": plot_boxplots(slice_rows, out_dir / "fig3_boxplots.png"),
        "fig4_lesion_volume_groups.png": plot_lv_groups(slice_rows, statistics["lesion volume group"],
                                                        out_dir / "fig4_lesion_volume_groups.png"),
        "fig2_overlays.png": plot_overlays(overlays, out_dir / "fig2_overlays.png"),
        "timings.png": plot_timings(volume_rows, out_dir / "timings.png"),
    }
    case_sections = _case_sections(out_dir / "cases", volume_rows, case_views)
    overall = table2[-1] if table2 else {}
    per_slice_s = [r["s_per_slice"] for r in volume_rows]
    body = f"""
<p>Model <b>{segmenter.model.model_id}</b> ({card.get('architecture', {})}), device {segmenter.device},
precision {segmenter.precision_name}{', left-right flip test-time augmentation' if segmenter.flip_tta else ''}.
{segmenter.describe_contrast_floor()}
Evaluated: {why}; {len(volume_rows)} volume(s).</p>
<p class='note'>{card.get('notes', '')}</p>
<h2>Per-slice results (the paper's Table 2)</h2>
<p>Overall median Dice <b>{overall.get('median_dice', math.nan)}</b>, sensitivity
<b>{overall.get('median_sensitivity', math.nan)}</b>, precision <b>{overall.get('median_precision', math.nan)}</b>
over {counts.get('lesion_slices', 0)} slices with manual lesion.
Slices seen: {counts.get('slices', 0)}; without manual lesion and left out of the medians:
{counts.get('both_empty', 0)} where the model also found nothing, {counts.get('false_positive_slices', 0)}
where it marked lesion (false-positive slices); lesion slices with no prediction (precision undefined,
left out of the precision median only): {counts.get('precision_undefined', 0)}.</p>
{table_html(table2)}
{figure_tag(out_dir / 'fig3_boxplots.png', 'Per-slice metrics per center and per disease (cf. the paper, Fig. 3).')}
<h2>By lesion volume per slice (G1 &lt;0.2, G2 0.2–0.7, G3 0.7–2, G4 2–5, G5 &ge;5 ml)</h2>
{figure_tag(out_dir / 'fig4_lesion_volume_groups.png', 'Stars: Bonferroni-corrected Mann-Whitney p < 0.05 (*), < 0.01 (**), < 0.001 (***), tested only where Kruskal-Wallis p < 0.05 (cf. Fig. 4).')}
<h2>Statistics</h2>
{table_html(stats_rows)}
<h2>Per-volume metrics (MICCAI 2017 WMH challenge definitions)</h2>
<p class='note'>Dice, HD95 (mm, boundaries from an in-plane erosion), absolute volume difference (%), lesion
recall and F1 on 26-connected 3D components. Comparable across tools, unlike per-slice figures.</p>
{table_html(volume_summary)}
{table_html(volume_rows)}
<h2>Samples: manual (red) and automatic (green)</h2>
{figure_tag(out_dir / 'fig2_overlays.png', 'Slice with the largest manual lesion area of up to four cases per disease (cf. Fig. 2).')}
<h2>Per case</h2>
<p class='note'>Each case's metrics and its slices with the most manual lesion plus the slice with the
largest false-positive area (red: manual only, green: automatic only, yellow: both).
{html.escape(segmenter.describe_thin_slices())} Column slab_mm says which cases. {html.escape(segmenter.describe_models())}
Column model says which model segmented each case. {html.escape(segmenter.brain_mask_setting())} (See the README's "Brain
mask".){_case_cap_note(volume_rows)}</p>
{case_sections}
<h2>Timing</h2>
<p>Median {(_median(per_slice_s) * 1000):.0f} ms per slice and {_median([r['total_s'] for r in volume_rows]):.2f} s per
volume (preprocessing + network + mapping back; reading and writing files not included).</p>
{figure_tag(out_dir / 'timings.png')}
<p class='note'>Files: per_slice.csv, per_volume.csv, per_volume_summary.csv, table2.csv/.md,
statistics.json/.md, {', '.join(figures)}, cases/*.png.</p>
"""
    report = out_dir / "report.html"
    report.write_text(html_page("DeepWML evaluation", body), encoding="utf-8")
    summary = {"evaluated": why, "volumes": len(volume_rows), "counts": counts, "overall": overall,
               "per_volume": volume_summary, "model": segmenter.model.model_id,
               "thin_model": segmenter.thin_model.model_id if segmenter.thin_model else None,
               "device": str(segmenter.device), "flip_tta": segmenter.flip_tta,
               "contrast_floor": segmenter.contrast_floor_setting()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n",
                                          encoding="utf-8")
    return report, summary
