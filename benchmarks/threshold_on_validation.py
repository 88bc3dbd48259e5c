"""Choose a model's threshold on its own validation cases (never on real evaluation scans).

    .venv/bin/python benchmarks/threshold_on_validation.py MODEL_DIR MANIFEST SPLIT_JSON [PART] [--record]
    .venv/bin/python benchmarks/threshold_on_validation.py MODEL_DIR MANIFEST SPLIT_JSON [PART] --grow
    .venv/bin/python benchmarks/threshold_on_validation.py MODEL_DIR MANIFEST SPLIT_JSON [PART] --tta
    .venv/bin/python benchmarks/threshold_on_validation.py MODEL_DIR MANIFEST SPLIT_JSON [PART] --bounded-by REF [--record]

MANIFEST and SPLIT_JSON are the training run's (``deepwml train`` writes ``split.json``); PART is
``val`` (default). SPLIT_JSON ``-``: every case of MANIFEST (a validation set of its own, e.g.
fresh synthetic heads that no model being compared was trained on). Prints the median and mean
per-volume Dice over the cases with lesions at each candidate threshold; the bundled model's
threshold is the one with the highest median (the project's primary figure); ``--record`` writes
it into the card (``threshold``) with the figures (``metrics.threshold_selection``).
It also prints, per threshold, the volume marked on the PART's lesion-free cases, and records it:
information only, the choice does not read it. Why: the rule reads the cases with lesions alone, so
it cannot see what a lower threshold costs on healthy heads, and every candidate of 2026-11-30/12-01
whose rule went below 0.8 then over-marked the lesion-free fresh heads (docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0").

``--grow`` (an experiment; docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0", the thirteenth): the card's threshold stays the
seed threshold and the sweep is over the growth threshold of seeded lesion growth (hysteresis, as in
LST's lesion growth algorithm: a lesion needs a voxel >= the threshold, then takes its 26-connected
voxels >= the growth threshold; "None" = no growth). Prints the figures only: growth lowered the
median at every growth threshold on 1.5.0's validation cases, so the segmenter does not grow.
The segmenter's defaults apply (brain mask on).

``--tta``: per-volume Dice at the card's threshold without and with left-right flip test-time
augmentation on the same cases (the rule of ``work-data/b23/RULE-tta.md``).

``--bounded-by REF`` (the rule of ``work-data/b28/RULE-bounded-threshold.md``, the
twenty-sixth experiment): the grid reaches 0.95, and only thresholds at which the model marks no more on
the PART's lesion-free cases than the model REF marks there at its own card threshold may be chosen
(the highest median among them; none: nothing is chosen or recorded). Why: a fine-tune is not
calibrated like its parent, and the plain rule cannot see healthy heads.

``--adaptive`` (an experiment; docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0", the eighteenth): a load-adaptive threshold, the
card's threshold unless the volume's lesion load at it is at least V ml, then t_low; the sweep over
(V, t_low) with the segmenter's defaults (TTA and brain mask on), chosen by the rule of
``work-data/b24/RULE-adaptive.md`` (highest mean among those whose median keeps the plain one's).
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from deepwml.evaluation.metrics import dice
from deepwml.image_io import load_flair
from deepwml.labels import read_label
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.model_files import read_card, write_card
from deepwml.segmenter import Segmenter

from fresh_heads_by_load import drawn  # a sibling script: benchmarks/ is on sys.path

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: ``--bounded-by``'s grid: every fine-tune's plain curve still rose at 0.8, the top of THRESHOLDS
BOUNDED_THRESHOLDS = (*THRESHOLDS, 0.85, 0.9, 0.95)
#: growth thresholds of ``--grow`` (None: no growth), highest first so that ties keep the higher
GROW_THRESHOLDS = (None, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


def cases_with_lesions(manifest: str, split_json: str, part: str = "val", lesion_free: bool = False,
                       only_lesion_free: bool = False) -> Iterator[tuple[sitk.Image, np.ndarray]]:
    """``(image, truth)`` of the ``part`` cases of ``manifest`` (every case when ``split_json`` is
    ``-``) whose label holds lesion: Dice is undefined without, so empty cases choose nothing.
    ``lesion_free``: the lesion-free cases too (truth all zero and nothing drawn, as the judge counts them:
    a case drawn with a few tenths of a ml on thick slices can keep no truth while its image shows them
    faintly; it has no Dice and is not lesion-free either); ``only_lesion_free``: those alone, and the
    cases whose manifest names a disease are not even read."""
    assignment = None
    if split_json != "-":
        with open(split_json, encoding="utf-8") as f:
            assignment = json.load(f)["assignment"]
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if assignment is None or assignment.get(row["patient"]) == part]
    if only_lesion_free:
        rows = [row for row in rows if not drawn(row, 0.0)]
    for row in tqdm(rows, desc=f"{part} cases", unit="case"):
        image = load_flair(row["flair"])
        truth = read_label(row["label"], image)
        if truth.any():
            if not only_lesion_free:
                yield image, truth
        elif (lesion_free or only_lesion_free) and not drawn(row, 0.0):
            yield image, truth


def dice_by_candidate(segmenter: Segmenter, manifest: str, split_json: str, part: str, candidates: Sequence,
                      mask: Callable[[np.ndarray, sitk.Image, Any], np.ndarray],
                      lesion_free_ml: dict | None = None) -> dict:
    """Per-volume Dice of every case with lesions for each candidate, ``mask(probabilities,
    image, candidate)`` giving its mask (probabilities computed once per case). ``lesion_free_ml``:
    filled with ``{candidate: ml marked on the lesion-free cases in all}`` (they are run too)."""
    scores: dict = {c: [] for c in candidates}
    if lesion_free_ml is not None:
        lesion_free_ml.update({c: 0.0 for c in candidates}, cases=0)
    for image, truth in cases_with_lesions(manifest, split_json, part, lesion_free=lesion_free_ml is not None):
        prob = sitk.GetArrayFromImage(segmenter.segment(image).probabilities)
        if truth.any():
            for c in candidates:
                scores[c].append(dice(truth, mask(prob, image, c) > 0))
            continue
        lesion_free_ml["cases"] += 1
        for c in candidates:
            lesion_free_ml[c] += float(np.count_nonzero(mask(prob, image, c))) * voxel_volume_ml(image)
    return scores


def dice_by_threshold(model: str, manifest: str, split_json: str, part: str = "val",
                      grow: bool = False, lesion_free_ml: dict | None = None,
                      thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """Per-volume Dice of every case with lesions, per candidate: thresholds, or with ``grow``
    growth thresholds at the card's threshold. One network pass (no TTA): how every recorded
    threshold was chosen, before TTA became the default (README "Test-time augmentation")."""
    segmenter = Segmenter(model, device="cpu", flip_tta=False)
    seed = segmenter.model.threshold
    if grow:
        return dice_by_candidate(segmenter, manifest, split_json, part, GROW_THRESHOLDS,
                                 lambda prob, image, t: grown_mask(prob, seed, t))
    return dice_by_candidate(segmenter, manifest, split_json, part, thresholds, lambda prob, image, t: prob >= t,
                             lesion_free_ml)


def lesion_free_ml_at_card_threshold(segmenter: Segmenter, manifest: str, split_json: str, part: str = "val") -> float:
    """The volume (ml, in all) ``segmenter`` marks at its own threshold on the ``part`` cases without lesions:
    the bound of ``--bounded-by``. Only those cases are segmented."""
    marked = 0.0
    for image, _ in cases_with_lesions(manifest, split_json, part, only_lesion_free=True):
        mask = sitk.GetArrayFromImage(segmenter.segment(image).mask)
        marked += float(np.count_nonzero(mask)) * voxel_volume_ml(image)
    return marked


def bounded_choice(scores: dict, lesion_free_ml: dict, bound_ml: float) -> float | None:
    """The threshold with the highest median Dice among those marking at most ``bound_ml`` on the
    lesion-free cases (ties: the higher threshold); None when no threshold stays within the bound."""
    admissible = [t for t in scores if lesion_free_ml[t] <= bound_ml]
    return max(admissible, key=lambda t: (round(float(np.median(scores[t])), 6), t), default=None)


#: ``--adaptive``: load limits (ml at the card's threshold) and the lower thresholds above them
ADAPTIVE_LOADS_ML = (5.0, 10.0, 20.0, 40.0)
ADAPTIVE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def adaptive_mask(prob: np.ndarray, voxel_ml: float, threshold: float,
                  candidate: tuple[float, float] | None) -> np.ndarray:
    """``prob >= threshold``, or, for ``candidate`` = (load_ml, low), ``prob >= low`` where that
    mask already holds ``load_ml`` or more (None: the plain threshold)."""
    plain = prob >= threshold
    if candidate is None or np.count_nonzero(plain) * voxel_ml < candidate[0]:
        return plain
    return prob >= candidate[1]


def dice_by_adaptive(model: str, manifest: str, split_json: str, part: str = "val") -> dict:
    """Per-volume Dice of every case with lesions for the plain threshold (key None) and every
    (load, low threshold) of the grid, with the segmenter's defaults (TTA, brain mask)."""
    segmenter = Segmenter(model, device="cpu")
    threshold = segmenter.model.threshold
    keys = [None] + [(v, t) for v in ADAPTIVE_LOADS_ML for t in ADAPTIVE_THRESHOLDS]
    return dice_by_candidate(segmenter, manifest, split_json, part, keys, lambda prob, image, k: adaptive_mask(
        prob, voxel_volume_ml(image), threshold, k))


def grown_mask(prob: np.ndarray, seed: float, grow: float | None) -> np.ndarray:
    """Seeded growth: the 26-connected components of ``prob >= grow`` holding a voxel ``>= seed``."""
    if grow is None:
        return prob >= seed
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray((prob >= grow).view(np.uint8)),
                                                            True))
    keep = np.zeros(int(labels.max()) + 1, dtype=bool)
    keep[np.unique(labels[prob >= seed])] = True
    keep[0] = False
    return keep[labels]


def record(model: str, scores: dict[float, list[float]], best: float, data: str,
           lesion_free_ml: dict | None = None, bound: dict | None = None) -> None:
    """Write the chosen threshold and the figures that chose it (on ``data``) into the model card,
    with the volume each threshold marks on the lesion-free cases (read by the choice only under
    ``bound``: ``{"reference": model, "ml": its marks}`` of ``--bounded-by``)."""
    card, path = read_card(model)
    card["threshold"] = best
    selection = card.setdefault("metrics", {})["threshold_selection"] = {
        "data": f"{data} ({len(scores[best])} cases with lesions); no real scan",
        "criterion": "median per-volume Dice",
        "median_per_volume_dice": {str(t): round(float(np.median(scores[t])), 4) for t in scores},
        "chosen": best,
        "script": "benchmarks/threshold_on_validation.py",
    }
    if lesion_free_ml:
        key = "lesion_free_ml_marked" if bound else "lesion_free_ml_marked_not_used_to_choose"
        selection[key] = {"cases": lesion_free_ml["cases"], **{str(t): round(lesion_free_ml[t], 3) for t in scores}}
    if bound:
        selection["criterion"] = ("highest median per-volume Dice among the thresholds marking on the lesion-free "
                                  "cases no more than the reference model at its own threshold")
        selection["bounded_by"] = {"model": bound["reference"], "lesion_free_ml_marked": round(bound["ml"], 3)}
    write_card(card, path)


def main(argv: list[str]) -> int:
    write = "--record" in argv
    grow = "--grow" in argv
    tta = "--tta" in argv
    adaptive = "--adaptive" in argv
    reference = None
    if "--bounded-by" in argv:
        at = argv.index("--bounded-by")
        reference = argv[at + 1] if at + 1 < len(argv) else None
        argv = argv[:at] + argv[at + 2:]
        if reference is None:
            print(__doc__)
            return 2
    argv = [a for a in argv if a not in ("--record", "--grow", "--tta", "--adaptive")]
    if len(argv) not in (3, 4):
        print(__doc__)
        return 2
    if tta:
        return main_tta(argv)
    if adaptive:
        return main_adaptive(argv)
    if grow:
        return main_grow(argv)
    if reference is not None:
        return main_bounded(argv, reference, write)
    free: dict = {}
    scores = dice_by_threshold(*argv, lesion_free_ml=free)
    print(f"cases with lesions: {len(scores[THRESHOLDS[0]])}; lesion-free cases: {free['cases']}")
    print_sweep(scores, free, lambda t: " marked in all (not used to choose)")
    best = max(THRESHOLDS, key=lambda t: float(np.median(scores[t])))
    print(f"highest median: {best}")
    if write:
        record(argv[0], scores, best, described_data(*argv), free)
        print(f"threshold {best} recorded in {argv[0]}")
    return 0


def print_sweep(scores: dict, free: dict, note: Callable[[float], str]) -> None:
    """One line per threshold: median and mean Dice, the ml marked on the lesion-free cases and ``note(t)``."""
    for t in scores:
        print(f"threshold {t}: median per-volume Dice {np.median(scores[t]):.4f}, mean {np.mean(scores[t]):.4f}; "
              f"lesion-free cases {free[t]:.2f} ml{note(t)}")


def described_data(model: str, manifest: str, split_json: str, part: str = "val") -> str:
    """What the threshold was chosen on, as the card says it."""
    return f"every case of {manifest}" if split_json == "-" else f"the training run's '{part}' split"


def main_bounded(argv: list[str], reference: str, write: bool) -> int:
    model, manifest, split_json, part = (*argv, "val")[:4]
    bound = lesion_free_ml_at_card_threshold(Segmenter(reference, device="cpu", flip_tta=False),
                                             manifest, split_json, part)
    free: dict = {}
    scores = dice_by_threshold(model, manifest, split_json, part, lesion_free_ml=free, thresholds=BOUNDED_THRESHOLDS)
    print(f"cases with lesions: {len(scores[BOUNDED_THRESHOLDS[0]])}; lesion-free cases: {free['cases']}; "
          f"{reference} marks {bound:.2f} ml on them at its own threshold (the bound)")
    print_sweep(scores, free, lambda t: "" if free[t] <= bound else " (over the bound)")
    best = bounded_choice(scores, free, bound)
    if best is None:
        print("no threshold stays within the bound: nothing chosen")
        return 1
    print(f"highest median within the bound: {best}")
    if write:
        record(model, scores, best, described_data(*argv), free, {"reference": reference, "ml": bound})
        print(f"threshold {best} recorded in {model}")
    return 0


def main_tta(argv: list[str]) -> int:
    model, manifest, split_json, part = (*argv, "val")[:4]
    plain, flipped = Segmenter(model, device="cpu", flip_tta=False), Segmenter(model, device="cpu", flip_tta=True)
    scores: dict[str, list[float]] = {"without": [], "with": []}
    for image, truth in cases_with_lesions(manifest, split_json, part):
        for name, segmenter in (("without", plain), ("with", flipped)):
            scores[name].append(dice(truth, sitk.GetArrayFromImage(segmenter.segment(image).mask) > 0))
    print(f"cases with lesions: {len(scores['with'])}; threshold {plain.model.threshold}")
    for name, values in scores.items():
        print(f"{name} TTA: median per-volume Dice {np.median(values):.4f}, mean {np.mean(values):.4f}")
    return 0


def main_adaptive(argv: list[str]) -> int:
    scores = dice_by_adaptive(*argv)
    plain = scores[None]
    print(f"cases with lesions: {len(plain)}; plain: median {np.median(plain):.4f}, mean {np.mean(plain):.4f}")
    for key, values in scores.items():
        if key is not None:
            print(f"load >= {key[0]:g} ml -> {key[1]}: median {np.median(values):.4f}, mean {np.mean(values):.4f}")
    allowed = [k for k in scores if k is not None and np.median(scores[k]) >= np.median(plain) - 0.005]
    # highest mean; ties: larger load limit, then higher low threshold
    best = max(allowed, key=lambda k: (round(float(np.mean(scores[k])), 6), k[0], k[1]), default=None)
    if best is None or np.mean(scores[best]) < np.mean(plain) + 0.005:
        print("no load-adaptive threshold beats the plain one by the rule")
    else:
        print(f"chosen by the rule: load >= {best[0]:g} ml -> {best[1]}")
    return 0


def main_grow(argv: list[str]) -> int:
    scores = dice_by_threshold(*argv, grow=True)
    print(f"cases with lesions: {len(scores[None])}")
    for t, values in scores.items():
        print(f"grow threshold {t}: median per-volume Dice {np.median(values):.4f}, mean {np.mean(values):.4f}")
    best = max(GROW_THRESHOLDS, key=lambda t: float(np.median(scores[t])))  # first maximum: the higher
    print(f"highest median: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
