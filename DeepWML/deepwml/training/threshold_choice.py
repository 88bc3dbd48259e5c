"""Choose a lesion model's threshold on its own validation cases (never on real evaluation scans).

Why here and not only in a benchmark script: a site that fine-tunes the bundled model on its own labelled scans
(``deepwml train --init``) gets a model that reads its output with its parent's threshold and contrast floor
(:func:`deepwml.model_files.inherited_reading`). With enough validation cases of its own it can do better: every
bundled threshold since 1.1.0 was chosen this way (README "The bundled model"). ``deepwml choose-threshold``,
``deepwml train --choose-threshold`` and the DeepWMLTraining module all call :func:`choose_threshold`, and
``benchmarks/threshold_on_validation.py`` (the recipe's experiments) uses the same sweep.

The rule (fixed; README "Training", "Choosing a model's own threshold", says where each part comes from):
- the figure is the **median per-volume Dice** over the cases with lesions, one network pass per case (no test-time
  augmentation: how every recorded threshold was chosen), the segmenter's other defaults on;
- with fewer than :data:`MIN_CASES` validation cases with lesions nothing is chosen: the bundled models' curves were
  flat within a few hundredths, so a handful of cases only picks noise (a few-case site keeps its parent's threshold);
- a fine-tune is bounded by its parent (the model it started from): when the validation cases include lesion-free
  ones, only thresholds marking no more there than the parent marks at its own threshold may be chosen (the plain rule
  cannot see healthy heads: every candidate of 2026-11-30/12-01 whose plain rule went below 0.8 then over-marked the
  lesion-free fresh heads, hence experiment 26's bounded rule); without lesion-free cases it is never set below the
  parent's threshold;
- ties keep the higher threshold.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from ..errors import ModelFileError
from ..evaluation.metrics import dice
from ..image_io import load_flair
from ..labels import read_label
from ..lesion_summary import voxel_volume_ml
from ..model_files import read_card, write_card
from .manifest import Case, read_manifest
from .split import load_split

log = logging.getLogger(__name__)

#: the grid of the recipe's sweeps since 1.1.0
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: the bounded rule's grid, and the product's: every fine-tune's plain curve still rose at 0.8, the top of THRESHOLDS
BOUNDED_THRESHOLDS = (*THRESHOLDS, 0.85, 0.9, 0.95)
#: fewer validation cases with lesions than this choose nothing
MIN_CASES = 10


def drawn(row: Mapping[str, str], truth_ml: float) -> bool:
    """Lesions were drawn in a case: its manifest's (or report's) disease is not "none"; without a disease
    column, its truth decides. A case drawn with lesions whose truth ended empty (a few tenths of a ml on thick
    slices) is neither a case with lesions nor a lesion-free one."""
    return row["disease"] != "none" if "disease" in row else truth_ml > 0


def part_cases(manifest: str | Path, split_json: str | Path, part: str = "val") -> list[Case]:
    """The cases of ``manifest`` (a CSV or a MICCAI folder) wholly in ``part`` of ``split_json`` (``-``: every case).
    An image-level split's cases share slices with training: none of them is wholly in one part."""
    cases = read_manifest(manifest)
    if str(split_json) == "-":
        return cases
    assignment = load_split(Path(split_json), cases)["assignment"]
    return [c for c in cases if assignment[c.case] == part]


def cases_with_lesions(manifest: str | Path, split_json: str | Path, part: str = "val", lesion_free: bool = False,
                       only_lesion_free: bool = False, progress: bool = True
                       ) -> Iterator[tuple[sitk.Image, np.ndarray]]:
    """``(image, truth)`` of the ``part`` cases whose label holds lesion (Dice is undefined without, so empty cases
    choose nothing). ``lesion_free``: the lesion-free cases too (truth all zero and nothing drawn: :func:`drawn`);
    ``only_lesion_free``: those alone, and the cases whose manifest names a disease are not even read."""
    cases = part_cases(manifest, split_json, part)
    if only_lesion_free:
        cases = [c for c in cases if not drawn({"disease": c.disease}, 0.0)]
    for case in tqdm(cases, desc=f"{part} cases", unit="case", disable=not progress):
        image = load_flair(case.flair)
        truth = read_label(case.label, image, case.label_value)
        if truth.any():
            if not only_lesion_free:
                yield image, truth
        elif (lesion_free or only_lesion_free) and not drawn({"disease": case.disease}, 0.0):
            yield image, truth


def dice_by_candidate(segmenter: Any, manifest: str | Path, split_json: str | Path, part: str, candidates: Sequence,
                      mask: Callable[[np.ndarray, sitk.Image, Any], np.ndarray],
                      lesion_free_ml: dict | None = None, progress: bool = True) -> dict:
    """Per-volume Dice of every case with lesions for each candidate, ``mask(probabilities, image, candidate)`` giving
    its mask (probabilities computed once per case). ``lesion_free_ml``: filled with ``{candidate: ml marked on the
    lesion-free cases in all}`` and ``"cases"`` (they are run too)."""
    scores: dict = {c: [] for c in candidates}
    if lesion_free_ml is not None:
        lesion_free_ml.update({c: 0.0 for c in candidates}, cases=0)
    for image, truth in cases_with_lesions(manifest, split_json, part, lesion_free=lesion_free_ml is not None,
                                           progress=progress):
        prob = sitk.GetArrayFromImage(segmenter.segment(image).probabilities)
        if truth.any():
            for c in candidates:
                scores[c].append(dice(truth, mask(prob, image, c) > 0))
            continue
        lesion_free_ml["cases"] += 1
        for c in candidates:
            lesion_free_ml[c] += float(np.count_nonzero(mask(prob, image, c))) * voxel_volume_ml(image)
    return scores


def one_pass_segmenter(model: str | Path) -> Any:
    """The segmenter every threshold is chosen with: the model's card floor, brain mask and white-matter restriction,
    one network pass (no TTA), on the CPU."""
    from ..segmenter import Segmenter

    return Segmenter(str(model), device="cpu", flip_tta=False)


def dice_by_threshold(model: str | Path, manifest: str | Path, split_json: str | Path, part: str = "val",
                      lesion_free_ml: dict | None = None, thresholds: Sequence[float] = THRESHOLDS,
                      progress: bool = True) -> dict:
    """Per-volume Dice of every case with lesions at each threshold (see :func:`dice_by_candidate`)."""
    return dice_by_candidate(one_pass_segmenter(model), manifest, split_json, part, thresholds,
                             lambda prob, image, t: prob >= t, lesion_free_ml, progress)


def lesion_free_ml_at_card_threshold(segmenter: Any, manifest: str | Path, split_json: str | Path, part: str = "val",
                                     progress: bool = True) -> float:
    """The volume (ml, in all) ``segmenter`` marks at its own threshold on the ``part`` cases without lesions: the
    bound of the bounded rule. Only those cases are segmented."""
    marked = 0.0
    for image, _ in cases_with_lesions(manifest, split_json, part, only_lesion_free=True, progress=progress):
        mask = sitk.GetArrayFromImage(segmenter.segment(image).mask)
        marked += float(np.count_nonzero(mask)) * voxel_volume_ml(image)
    return marked


def bounded_choice(scores: dict, lesion_free_ml: dict, bound_ml: float) -> float | None:
    """The threshold with the highest median Dice among those marking at most ``bound_ml`` on the lesion-free cases
    (ties: the higher threshold); None when no threshold stays within the bound."""
    admissible = [t for t in scores if lesion_free_ml[t] <= bound_ml]
    return max(admissible, key=lambda t: (round(float(np.median(scores[t])), 6), t), default=None)


def highest_median(scores: dict, lowest: float = 0.0) -> float | None:
    """The threshold (at least ``lowest``) with the highest median Dice; ties: the higher (None: none that high)."""
    return max((t for t in scores if t >= lowest), key=lambda t: (round(float(np.median(scores[t])), 6), t),
               default=None)


@dataclass
class ThresholdChoice:
    """What :func:`choose_threshold` found: the threshold chosen (None: none, ``why`` says why) and its figures."""

    chosen: Optional[float]
    why: str
    cases_with_lesions: int
    lesion_free_cases: int
    median_dice: dict = field(default_factory=dict)
    lesion_free_ml: dict = field(default_factory=dict)
    parent: Optional[str] = None
    bound_ml: Optional[float] = None
    recorded: bool = False

    def lines(self) -> list[str]:
        """The sweep and the verdict, for a terminal or a log."""
        out = [f"threshold {t}: median per-volume Dice {d:.4f}"
               + (f", {self.lesion_free_ml[t]:.2f} ml on the lesion-free cases" if self.lesion_free_cases else "")
               for t, d in self.median_dice.items()]
        return out + [self.why]


def choose_threshold(model_dir: str | Path, manifest: str | Path, split_json: str | Path = "-", part: str = "val",
                     parent: str | Path | None = "card", min_cases: int = MIN_CASES, record: bool = False,
                     progress: bool = True) -> ThresholdChoice:
    """Choose ``model_dir``'s threshold on the ``part`` cases of ``manifest`` by the module's rule; ``record``: write it
    and its figures into the model's card. ``parent``: the model it was fine-tuned from, which bounds the choice
    (``"card"``: the one its card names, ``training.initialised_from.path``; None: not bounded, e.g. a model trained
    from random weights)."""
    card, card_path = read_card(model_dir)
    parent_threshold = parent_name = None
    if parent == "card":
        start = card.get("training", {}).get("initialised_from") or {}
        parent, parent_threshold, parent_name = start.get("path"), start.get("threshold"), start.get("model")
        if parent and not Path(parent).exists():
            raise ModelFileError(Path(parent), f"the model {card.get('model')} was fine-tuned from is not there to "
                                               "bound its threshold (name it with --parent DIR, or --parent none)")
    if parent and parent_threshold is None:
        parent_card = read_card(parent)[0]
        parent_threshold = parent_card.get("threshold", 0.5)
        parent_name = f"{parent_card.get('name', 'unnamed')}@{parent_card.get('version', '?')}"  # its model id
    free: dict = {}
    scores = dice_by_threshold(model_dir, manifest, split_json, part, free, BOUNDED_THRESHOLDS, progress)
    n_cases, n_free = len(scores[BOUNDED_THRESHOLDS[0]]), free["cases"]
    medians = {t: round(float(np.median(v)), 4) if v else float("nan") for t, v in scores.items()}
    free_ml = {t: round(free[t], 3) for t in BOUNDED_THRESHOLDS}
    result = ThresholdChoice(None, "", n_cases, n_free, medians, free_ml,
                             parent_name or (str(parent) if parent else None))
    if n_cases < min_cases:
        result.why = (f"not chosen: {n_cases} validation case(s) with lesions, fewer than {min_cases}; the model keeps "
                      f"threshold {card.get('threshold')}")
        if str(split_json) != "-" and json.loads(Path(split_json).read_text(encoding="utf-8")).get("level") == "image":
            result.why += " (an image-level split puts no case wholly in one part: choose on a manifest of its own)"
        return result
    if parent and n_free:
        result.bound_ml = lesion_free_ml_at_card_threshold(one_pass_segmenter(parent), manifest, split_json, part,
                                                           progress)
        result.chosen = bounded_choice(scores, free, result.bound_ml)
        rule = (f"highest median per-volume Dice among the thresholds marking on the {n_free} lesion-free cases no "
                f"more than {result.parent} at its own threshold ({result.bound_ml:.2f} ml)")
    elif parent:
        floor = float(parent_threshold)
        result.chosen = highest_median(scores, floor)
        rule = (f"highest median per-volume Dice at or above {result.parent}'s threshold {floor:g} (no lesion-free "
                "validation case to show what a lower one costs on healthy heads)")
    else:
        result.chosen = highest_median(scores)
        rule = "highest median per-volume Dice"
    if result.chosen is None:
        result.why = (f"not chosen: no threshold meets the rule ({rule}); the model keeps threshold "
                      f"{card.get('threshold')}")
        return result
    result.why = f"chosen: {result.chosen:g} ({rule}; {n_cases} validation cases with lesions)"
    if record:
        data = f"every case of {manifest}" if str(split_json) == "-" else f"the '{part}' cases of {split_json}"
        record_choice(model_dir, result, rule, data)
        result.recorded = True
    return result


def record_choice(model_dir: str | Path, result: ThresholdChoice, rule: str, data: str,
                  command: str = "deepwml choose-threshold (deepwml.training.threshold_choice)") -> None:
    """The chosen threshold and the figures that chose it (on ``data``) into the card; the contrast floor stays as it
    is (a fine-tune keeps its parent's, which says so in its ``inherited_from``), and what the choice replaced is kept
    under ``replaced``."""
    card, card_path = read_card(model_dir)
    before = card.get("metrics", {}).get("threshold_selection", {})
    card["threshold"] = result.chosen
    card.setdefault("metrics", {})["threshold_selection"] = {
        "data": f"{data} ({result.cases_with_lesions} cases with lesions, {result.lesion_free_cases} lesion-free); "
                "no real evaluation scan",
        "criterion": rule,
        "median_per_volume_dice": {str(t): d for t, d in result.median_dice.items()},
        # read by the choice only under a parent's bound (README "The bundled model": information otherwise)
        ("lesion_free_ml_marked" if result.bound_ml is not None else "lesion_free_ml_marked_not_used_to_choose"): {
            "cases": result.lesion_free_cases, **{str(t): m for t, m in result.lesion_free_ml.items()}},
        "chosen": result.chosen,
        **({"replaced": {k: before[k] for k in ("chosen", "inherited_from") if k in before}} if before else {}),
        "command": command,
        **({"bounded_by": {"model": result.parent, "lesion_free_ml_marked": round(result.bound_ml, 3)}}
           if result.bound_ml is not None else {}),
    }
    write_card(card, card_path)
    log.info("threshold %s recorded in %s", result.chosen, card_path)
