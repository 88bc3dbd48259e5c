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

import sys
from typing import Callable

import numpy as np
import SimpleITK as sitk

from deepwml.evaluation.metrics import dice
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.segmenter import Segmenter
from deepwml.training.threshold_choice import (BOUNDED_THRESHOLDS, THRESHOLDS, ThresholdChoice, bounded_choice,
                                               cases_with_lesions, dice_by_candidate, dice_by_threshold,
                                               lesion_free_ml_at_card_threshold, one_pass_segmenter, record_choice)

#: growth thresholds of ``--grow`` (None: no growth), highest first so that ties keep the higher
GROW_THRESHOLDS = (None, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


def dice_by_growth(model: str, manifest: str, split_json: str, part: str = "val") -> dict:
    """Per-volume Dice of every case with lesions per growth threshold at the card's threshold (one network pass)."""
    segmenter = one_pass_segmenter(model)
    seed = segmenter.model.threshold
    return dice_by_candidate(segmenter, manifest, split_json, part, GROW_THRESHOLDS,
                             lambda prob, image, t: grown_mask(prob, seed, t))


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
    """Write the chosen threshold and the figures that chose it (on ``data``) into the model card
    (:func:`deepwml.training.threshold_choice.record_choice`), with the volume each threshold marks on the lesion-free
    cases (read by the choice only under ``bound``: ``{"reference": model, "ml": its marks}`` of ``--bounded-by``)."""
    free = lesion_free_ml or {"cases": 0}
    choice = ThresholdChoice(best, "", len(scores[best]), free["cases"],
                             {t: round(float(np.median(v)), 4) for t, v in scores.items()},
                             {t: round(free.get(t, 0.0), 3) for t in scores},
                             parent=bound["reference"] if bound else None, bound_ml=bound["ml"] if bound else None)
    rule = ("highest median per-volume Dice among the thresholds marking on the lesion-free cases no more than the "
            "reference model at its own threshold" if bound else "highest median per-volume Dice")
    record_choice(model, choice, rule, data, "benchmarks/threshold_on_validation.py")


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
    return f"every case of {manifest}" if split_json == "-" else f"the '{part}' cases of {split_json}"


def main_bounded(argv: list[str], reference: str, write: bool) -> int:
    model, manifest, split_json, part = (*argv, "val")[:4]
    bound = lesion_free_ml_at_card_threshold(one_pass_segmenter(reference),
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
    plain, flipped = one_pass_segmenter(model), Segmenter(model, device="cpu", flip_tta=True)
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
    scores = dice_by_growth(*argv)
    print(f"cases with lesions: {len(scores[None])}")
    for t, values in scores.items():
        print(f"grow threshold {t}: median per-volume Dice {np.median(values):.4f}, mean {np.mean(values):.4f}")
    best = max(GROW_THRESHOLDS, key=lambda t: float(np.median(scores[t])))  # first maximum: the higher
    print(f"highest median: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
