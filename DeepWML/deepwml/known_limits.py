"""Known limits of a lesion model, said next to each result they apply to (``cautions``).

Why: the bundled model is trained on synthetic heads only, and its measured real-data figures
(model card, ``metrics.real_data``, written by ``benchmarks/record_real_data.py``) show where it
is weak: thin-slice (1 mm 3D) FLAIR, and heavy confluent loads, which it under-segments. A
radiologist reading one volume sees the summary and the segmentation, not the README, so the
caution travels with the result: in the summary JSON, the command line's report, the batch and
cohort tables and the Slicer panel. Every figure quoted comes from the card of the model that
ran; nothing is measured or written here, and a card without real-data figures says so.

Two steps, because a result's volume changes when it is re-thresholded (Slicer) while the rest
does not: :func:`known_limits` (model card + how the network saw the input: a dict that can be
stored and sent between processes) and :func:`cautions` (those limits + the lesion volume).
"""

from __future__ import annotations

from statistics import median
from typing import Any

from .reslice import THIN_SLICE_MM

#: A load at least this large (ml, marked) gets the heavy-load caution: the cut every experiment
#: used for "heavy" (docs/EXPERIMENTS.md), fixed before any real figure; not tuned.
HEAVY_LOAD_ML = 20.0
#: Real MS cases at least this large (ml, truth) are the card's heavy loads quoted in that caution.
HEAVY_TRUTH_ML = 20.0

THIN, HEAVY = "thin_slices", "heavy_load"


def _real_sets(card: dict) -> dict[str, dict[str, dict[str, float]]]:
    """The card's labelled real-data figures per volume: ``{set: {case: {dice, truth_ml, pred_ml, ...}}}``
    (sets of unlabelled whole heads, which have no Dice, are left out)."""
    real = (card.get("metrics") or {}).get("real_data") or {}
    sets: dict[str, dict[str, dict[str, float]]] = {}
    for group in real.values():
        if isinstance(group, dict):
            sets.update({name: cases for name, cases in group.items() if isinstance(cases, dict) and cases
                         and all(isinstance(c, dict) and {"dice", "truth_ml", "pred_ml"} <= c.keys()
                                 for c in cases.values())})
    return sets


def _set_for(sets: dict, slice_thickness_mm: float, slab_mm: float, sliding: bool) -> tuple[str, str]:
    """``(set-name suffix, words)`` of the real-data set measured the way this input is seen
    (slabs named by their whole millimetres, as ``benchmarks/real_scans.sh`` names its reports).
    A thick input is matched with the card's resliced set nearest its slice thickness (3, 5 or
    8 mm for the bundled card; 5 mm when the card has none), so an 8 mm scan quotes 8 mm figures."""
    if slice_thickness_mm < THIN_SLICE_MM:
        mm = round(slab_mm)
        if slab_mm > 0 and sliding:
            return f"native-sliding{mm}", f"1 mm 3D FLAIR seen through sliding {mm} mm slabs"
        if slab_mm > 0:
            return f"native-slab{mm}", f"1 mm 3D FLAIR seen as {mm} mm slabs"
        return "native", "1 mm 3D FLAIR"
    resliced = [mm for mm in (_resliced_mm(name) for name in sets) if mm is not None]
    mm = min(resliced, key=lambda t: (abs(t - slice_thickness_mm), t)) if resliced else 5.0
    return f"{mm:g}mm", f"1 mm 3D FLAIR resliced to {mm:g} mm slices"


def _resliced_mm(set_name: str) -> float | None:
    """The slab thickness of a resliced set's name (``lesjak2017-8mm`` -> 8.0); None for any other set."""
    tail = set_name.rsplit("-", 1)[-1]
    if not tail.endswith("mm"):
        return None
    try:
        return float(tail[:-2])
    except ValueError:
        return None


def _find(sets: dict, suffix: str) -> dict[str, dict[str, float]] | None:
    return next((cases for name, cases in sets.items() if name.endswith("-" + suffix)), None)


def known_limits(card: dict, slice_thickness_mm: float, slab_mm: float = 0.0, sliding: bool = False
                 ) -> dict[str, str]:
    """``{code: sentence}`` of the limits of the model with ``card`` that apply to an input whose
    slices the network saw at ``slice_thickness_mm`` (``slab_mm`` > 0: thin slices averaged into
    slabs, ``sliding`` ones). ``heavy_load`` applies only to a heavy result (:func:`cautions` decides)."""
    sets = _real_sets(card)
    limits: dict[str, str] = {}
    suffix, seen_as = _set_for(sets, slice_thickness_mm, slab_mm, sliding)
    here = _find(sets, suffix)
    if slice_thickness_mm < THIN_SLICE_MM:
        if here:
            thick = _find(sets, "5mm")
            dice_here = median(c["dice"] for c in here.values())
            also = (f"; {median(c['dice'] for c in thick.values()):.2f} on the same scans resliced to 5 mm"
                    if thick else "")
            limits[THIN] = (f"Thin slices: on {seen_as} this model's median per-volume Dice is {dice_here:.2f} "
                            f"({len(here)} real MS patients{also}). Check every contour.")
        else:
            limits[THIN] = ("Thin slices: this model has no measured accuracy on real thin-slice (3D) FLAIR. "
                            "Check every contour.")
    heavy = [c for c in (here or _find(sets, "5mm") or {}).values() if c.get("truth_ml", 0) >= HEAVY_TRUTH_ML]
    if heavy:
        found = ", ".join(f"{c['pred_ml']:.0f} of {c['truth_ml']:.0f} ml" for c in heavy)
        scans = f"{len(heavy)} real MS scan{'s' if len(heavy) > 1 else ''}"
        limits[HEAVY] = (f"Heavy lesion load: on {scans} with a confluent load of {HEAVY_TRUTH_ML:g} ml or more "
                         f"this model found {found} ({seen_as if here else '1 mm 3D FLAIR resliced to 5 mm slices'}). "
                         "The volume is likely underestimated; check the edges of confluent lesions.")
    elif sets:
        limits[HEAVY] = ("Heavy lesion load: this model has no measured accuracy on real heavy confluent loads. "
                         "Check the edges of confluent lesions.")
    return limits


def cautions(limits: dict[str, str], total_volume_ml: float) -> list[dict[str, str]]:
    """The cautions of one result: ``[{"code", "text"}]`` (thin slices always where they apply,
    the heavy-load one only for at least :data:`HEAVY_LOAD_ML` marked)."""
    out = []
    if THIN in limits:
        out.append({"code": THIN, "text": limits[THIN]})
    if HEAVY in limits and total_volume_ml >= HEAVY_LOAD_ML:
        out.append({"code": HEAVY, "text": limits[HEAVY]})
    return out


def caution_codes(summary: dict[str, Any]) -> str:
    """A summary's caution codes for one table cell ("" when none)."""
    return ";".join(c["code"] for c in summary.get("cautions") or [])
