"""No lesion marks on the hippocampus and amygdala: a small mesial-temporal network beside the white-matter one.

Why: the hippocampus and amygdala are physiologically bright on normal FLAIR (brighter than the neocortex), and a
white-matter hyperintensity never lies in them: WMH raters leave them unlabelled and the synthesis never draws a
lesion there. The white-matter restriction (:mod:`deepwml.white_matter`) cannot remove marks on them, since they
border the temporal white matter and the temporal horn and so lie "near" white matter at its 4 mm tolerance; on the
near-healthy real 3D head (docs/EXPERIMENTS.md, experiment 49) the largest marks left lie bilaterally
on exactly these structures. So a width-8 U-Net at half the canvas resolution (the brain and white-matter networks'
architecture and cost), trained from scratch on the hippocampus and amygdala of synthetic heads (SynthSeg labels
17/18/53/54, without the drawn lesions; never a real scan), runs on the same slices as the white-matter network, and
every marked component (26-connected, at the threshold) of at most :data:`~deepwml.white_matter.MAX_DROPPED_ML` with
at least :data:`MIN_INSIDE_FRACTION` of its voxels inside that mask is dropped.

Why "inside" without tolerance (the white-matter rule has 4 mm): a periventricular lesion at the temporal horn lies
in the white matter beside the hippocampus; only a mark that sits mostly on the structure itself is removed. Why the
same size cap: confluent lesion blobs are never what this is for. The settings were fixed by a rule before the
network existed (``work-data/b39/RULE-mesial-temporal.md``), judged on synthetic heads and phantoms only.
**Not on by default**: experiment 49's network (trained from scratch on 240 synthetic heads) failed its rule on
fresh synthetic heads (paired Dice lower bound -0.0038 < -0.003) and the phantom test (0.8310 -> 0.8251): its mask
reaches true lesions beside the temporal horn -- the phantoms' periventricular lesions at the temporal horns, which
real MS has too, lie within millimetres of the hippocampus, so a sharper mask would put them at risk as well
(docs/EXPERIMENTS.md, experiment 49). It stays opt-in, for measurement.
Why a guard: a network that called much of the brain mesial temporal would delete lesions; above
:data:`MAX_MESIAL_TEMPORAL_SHARE` of the brain (or head) on the slices it ran on nothing is removed.
"""

from __future__ import annotations

from pathlib import Path

from .model_files import DEFAULT_MODEL_DIR, LoadedModel, load_model

#: Where a bundled mesial-temporal model would lie; none is bundled (experiment 49's network failed its rule,
#: docs/EXPERIMENTS.md), so the exclusion is opt-in (``--mesial-temporal-model DIR``).
MESIAL_TEMPORAL_MODEL_DIR = DEFAULT_MODEL_DIR.parent / "mesial-temporal"
#: ``task`` of a mesial-temporal model's card.
MESIAL_TEMPORAL_TASK = "mesial-temporal"
#: A marked component (at most white_matter.MAX_DROPPED_ML) is dropped when at least this share of its voxels lie
#: inside the mesial-temporal mask.
MIN_INSIDE_FRACTION = 0.5
#: Above this share of the brain mask's (or, without one, the head's) canvas pixels, on the slices the network ran
#: on, the mask is not trusted. The hippocampus and amygdala are ~1 % of a brain and a few % of a temporal slice.
MAX_MESIAL_TEMPORAL_SHARE = 0.15


def load_mesial_temporal_model(path: str | Path | LoadedModel | None = None) -> LoadedModel:
    """The verified mesial-temporal model at ``path`` (default: the bundled one); another task's model is refused in
    one line."""
    model = path if isinstance(path, LoadedModel) else load_model(path or MESIAL_TEMPORAL_MODEL_DIR, framework="numpy")
    return model.require_task(MESIAL_TEMPORAL_TASK, f", not a mesial-temporal model (its card's task must be "
                                                    f"{MESIAL_TEMPORAL_TASK!r}); pass a mesial-temporal model or "
                                                    "--no-mesial-temporal")
