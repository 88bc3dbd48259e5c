"""Defaults of the command line's options, in a module that imports nothing.

Why: ``deepwml segment`` of one volume is mostly start-up (issue 14, the cold start). Its parser
is built from these values before numpy, SimpleITK or ONNX Runtime are imported, so the volume
can start reading (:class:`deepwml.read_ahead.ReadAhead`) while they are; the modules that use
the values import them from here.
"""

#: Default slab thickness (mm) for thin-slice volumes in :class:`deepwml.segmenter.Segmenter`
#: (``--thin-slab-mm``); 0 segments every native slice. One constant, so the default can
#: follow the model. 0 for the bundled model 0.2.0: on synthetic 1 mm phantoms (data we may
#: choose on) native slices scored Dice 0.04-0.06 higher than 3 mm slabs, which are 2-3x
#: faster; real-scan figures of both modes are in the README ("Accuracy on real scans").
THIN_SLAB_MM = 0.0

#: ``--precision`` names: float32 runs without autocast, bf16/fp16 with PyTorch autocast, int8
#: in ONNX Runtime on the CPU (the model's quantised graph, see deepwml.onnx_int8).
PRECISIONS = ("auto", "float32", "bf16", "fp16", "int8")

#: ``deepwml sanity``: predicted lesion farther than this from the registered brain mask counts
#: as "outside the brain" (mm): a registered template's outline is accurate to a few
#: millimetres, not to a voxel (:mod:`deepwml.evaluation.brain_mask`).
OUTSIDE_TOLERANCE_MM = 3.0

#: Lesion probability is kept up to this far (mm, in-plane) outside the brain mask
#: (:mod:`deepwml.brain_mask`, ``--brain-margin-mm``). 0 since experiment 46 (README "Brain mask"; history: docs/EXPERIMENTS.md): a WMH
#: lies in the brain, and on 141 synthetic heads with lesions no margin was non-inferior to 3 mm (mean paired
#: Dice -0.0007 and +0.0004) with less marked on lesion-free heads; 3 mm had been fixed by reasoning alone.
DEFAULT_MARGIN_MM = 0.0

#: The Segmenter's white-matter model (:mod:`deepwml.white_matter`, ``--no-white-matter`` / ``--white-matter-model``):
#: "bundled" since experiment 48 (README "White-matter restriction", stages in docs/EXPERIMENTS.md: non-inferior on fresh synthetic heads and the
#: phantom test, chosen by a rule fixed before its figures; the real floors held); None = no restriction.
DEFAULT_WHITE_MATTER_MODEL = "bundled"

#: The Segmenter's mesial-temporal model (:mod:`deepwml.mesial_temporal`, part of the white-matter restriction;
#: ``--mesial-temporal-model DIR``): None = no exclusion (experiment 49's network failed its rule; opt-in only).
DEFAULT_MESIAL_TEMPORAL_MODEL: str | None = None


def default_flip_tta(precision: str) -> bool:
    """Whether the network also sees each slice flipped left-right (its probabilities averaged)
    when the user did not say (``--tta`` / ``--no-tta``): on, except in the int8 fast mode.

    Why on: on 1.6.0's own validation cases median per-volume Dice 0.553 -> 0.570, on the phantom
    test 0.746 -> 0.774 with half the false-positive slices (README "Test-time augmentation";
    rule in work-data/b23/RULE-tta.md). Why not for int8: it doubles the network's time, and
    int8 is the mode for speed (issue 14's cold start)."""
    return precision != "int8"
