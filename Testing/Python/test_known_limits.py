"""Cautions with a result: the model card's measured limits that apply to one input (known_limits)."""

from __future__ import annotations

import csv
import json
from statistics import median

import SimpleITK as sitk

from deepwml.cli import main
from deepwml.known_limits import HEAVY, HEAVY_LOAD_ML, THIN, cautions, known_limits
from deepwml.model_files import DEFAULT_MODEL_DIR

CARD = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text(encoding="utf-8"))


def _real(set_name: str) -> dict:
    return CARD["metrics"]["real_data"]["lesjak2017"][f"lesjak2017-{set_name}"]


def test_thin_input_quotes_the_cards_own_thin_and_thick_figures():
    limits = known_limits(CARD, slice_thickness_mm=1.0)
    thin, thick = median(c["dice"] for c in _real("native").values()), median(c["dice"] for c in _real("5mm").values())
    assert thin < thick  # the reason the caution exists: the bundled model is weaker on 1 mm FLAIR
    assert f"Dice is {thin:.2f}" in limits[THIN] and f"{thick:.2f} on the same scans resliced to 5 mm" in limits[THIN]
    slabs = known_limits(CARD, slice_thickness_mm=1.0, slab_mm=3.0)[THIN]
    assert "3 mm slabs" in slabs and f"{median(c['dice'] for c in _real('native-slab3').values()):.2f}" in slabs
    assert THIN not in known_limits(CARD, slice_thickness_mm=5.0)


def test_heavy_load_caution_quotes_the_heavy_real_cases_and_needs_a_heavy_result():
    heavy = [c for c in _real("5mm").values() if c["truth_ml"] >= 20]
    assert heavy, "the bundled card's real data should hold a heavy load"
    limits = known_limits(CARD, slice_thickness_mm=5.0)
    for case in heavy:
        assert f"{case['pred_ml']:.0f} of {case['truth_ml']:.0f} ml" in limits[HEAVY]
    assert cautions(limits, HEAVY_LOAD_ML - 0.01) == []
    assert [c["code"] for c in cautions(limits, HEAVY_LOAD_ML)] == [HEAVY]
    assert [c["code"] for c in cautions(known_limits(CARD, 1.0), 0.5)] == [THIN]


def test_a_card_without_real_figures_claims_nothing():
    limits = known_limits({"metrics": {}}, slice_thickness_mm=1.0)
    assert "no measured accuracy" in limits[THIN] and HEAVY not in limits
    assert known_limits({"metrics": {}}, slice_thickness_mm=5.0) == {}
    # unlabelled whole heads (no Dice) are not real-data figures to quote
    sanity_only = {"metrics": {"real_data": {"whole_head_sanity": {"scan": {"pred_ml": 3.0}}}}}
    assert known_limits(sanity_only, slice_thickness_mm=5.0) == {}


def test_segment_reports_cautions_in_the_summary_the_table_and_the_output(phantom_flair, tmp_path, capsys):
    """A thick phantom with a light load gets none; the same scan declared as 1 mm slices gets the
    thin-slice caution, printed and in the summaries (the bundled model has real figures)."""
    thin = sitk.ReadImage(str(phantom_flair))
    thin.SetSpacing((*thin.GetSpacing()[:2], 1.0))
    thin_path = tmp_path / "thin.nii.gz"
    sitk.WriteImage(thin, str(thin_path))
    out = tmp_path / "out"
    code = main(["segment", str(phantom_flair), str(thin_path), "-o", str(out), "--device", "cpu",
                 "--summary", str(out / "batch.csv")])
    assert code == 0
    printed = capsys.readouterr().out
    thick_summary = json.loads((out / "flair.summary.json").read_text(encoding="utf-8"))
    thin_summary = json.loads((out / "thin.summary.json").read_text(encoding="utf-8"))
    assert thick_summary["total_volume_ml"] < HEAVY_LOAD_ML and thick_summary["cautions"] == []
    assert [c["code"] for c in thin_summary["cautions"]][0] == THIN
    assert f"caution: {thin_summary['cautions'][0]['text']}" in printed
    rows = {row["input"]: row for row in csv.DictReader(open(out / "batch.csv", encoding="utf-8"))}
    assert rows[str(phantom_flair)]["cautions"] == "" and rows[str(thin_path)]["cautions"].startswith(THIN)


def test_sliding_slabs_quote_their_own_figures_or_none():
    with_sliding = json.loads(json.dumps(CARD))
    lesjak = with_sliding["metrics"]["real_data"]["lesjak2017"]
    lesjak.pop("lesjak2017-native-sliding3", None)
    assert "no measured accuracy" in known_limits(with_sliding, 1.0, 3.0, sliding=True)[THIN]
    lesjak["lesjak2017-native-sliding3"] = {"p": {"dice": 0.61, "truth_ml": 30.0, "pred_ml": 20.0}}
    limits = known_limits(with_sliding, 1.0, 3.0, sliding=True)
    assert "sliding 3 mm slabs this model's median per-volume Dice is 0.61" in limits[THIN]
    assert "found 20 of 30 ml" in limits[HEAVY]


def test_a_thick_input_quotes_the_real_set_nearest_its_slice_thickness():
    """An 8 mm clinical scan quotes the card's 8 mm figures, a 5.5 mm one the 5 mm figures, a 3.4 mm one the
    3 mm figures; a card whose only resliced set is 5 mm quotes it for every thickness."""
    card = json.loads(json.dumps(CARD))
    lesjak = card["metrics"]["real_data"]["lesjak2017"]
    for mm, heavy_found in ((3, 21.0), (5, 22.0), (8, 23.0)):
        lesjak[f"lesjak2017-{mm}mm"] = {"p": {"dice": 0.7, "truth_ml": 40.0, "pred_ml": heavy_found}}
    for thickness, mm, found in ((8.0, 8, 23), (7.0, 8, 23), (5.5, 5, 22), (3.4, 3, 21), (2.0, 3, 21)):
        text = known_limits(card, slice_thickness_mm=thickness)[HEAVY]
        assert f"found {found} of 40 ml (1 mm 3D FLAIR resliced to {mm} mm slices)" in text, (thickness, text)
    for mm in (3, 8):
        del lesjak[f"lesjak2017-{mm}mm"]
    assert "found 22 of 40 ml (1 mm 3D FLAIR resliced to 5 mm slices)" in known_limits(card, 8.0)[HEAVY]
    # the bundled card itself: an 8 mm scan quotes the 8 mm heavy case (measured since 2026-12-03)
    heavy8 = [c for c in _real("8mm").values() if c["truth_ml"] >= 20]
    assert heavy8 and all(f"{c['pred_ml']:.0f} of {c['truth_ml']:.0f} ml" in known_limits(CARD, 8.0)[HEAVY]
                          for c in heavy8)
