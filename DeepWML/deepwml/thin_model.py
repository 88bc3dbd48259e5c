"""The thin-slice model: a second lesion model for volumes whose slices the network sees thinner
than :data:`deepwml.reslice.THIN_SLICE_MM` (a 1 mm 3D FLAIR, a thin 2D stack), which the
:class:`deepwml.segmenter.Segmenter` routes them to.

Why a second model rather than one trained on both: a width-16 network fine-tuned on thick and
thin heads together gained on 1 mm FLAIR and lost on thick slices, the product's main input
(docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0", the ninth); a model per acquisition keeps both. Thick inputs, and thin
ones seen as thick slabs (``--thin-slab-mm``), keep the lesion model.

Which thin model runs (``thin_model`` of the Segmenter, ``--thin-model`` on the command line):
``"auto"`` (the default) is the bundled thin model when the lesion model is the bundled one and a
thin model is bundled, and none otherwise, so that a model the user chose (a site's fine-tune) is
never silently replaced on thin inputs; ``"bundled"``, a folder or a loaded model name one;
``None`` routes nothing.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelFileError
from .model_files import CARD_NAME, DEFAULT_MODEL_DIR, LoadedModel, load_model
from .reslice import THIN_SLICE_MM

#: The bundled thin-slice model (absent in an extension built without one: "auto" then routes nothing).
THIN_MODEL_DIR = DEFAULT_MODEL_DIR.parent / "thin"


def is_bundled_lesion_model(model: LoadedModel) -> bool:
    """Whether ``model`` is the bundled lesion model (its folder), which "auto" pairs with the bundled thin model."""
    return model.path.resolve().parent == DEFAULT_MODEL_DIR.resolve()


def resolve_thin_model(thin_model: LoadedModel | str | Path | None, lesion_model: LoadedModel
                       ) -> LoadedModel | None:
    """The verified thin-slice model to route thin volumes to, or None (see the module's docstring).

    A thin model must be a lesion model built like ``lesion_model`` (same canvas divisor, hence
    the same head and brain windows) — refused in one line otherwise."""
    if thin_model is None or thin_model == "none":
        return None
    if thin_model == "auto":
        if not is_bundled_lesion_model(lesion_model) or not (THIN_MODEL_DIR / CARD_NAME).exists():
            return None
        thin_model = "bundled"
    if isinstance(thin_model, LoadedModel):
        loaded = thin_model
    else:
        loaded = load_model(THIN_MODEL_DIR if thin_model == "bundled" else thin_model, framework="numpy")
    loaded.require_task("lesion", ", not a lesion model; --thin-model takes a lesion model for thin slices")
    if loaded.config.divisor != lesion_model.config.divisor:
        raise ModelFileError(loaded.path, f"thin-slice model's network needs canvas sizes divisible by "
                                          f"{loaded.config.divisor}, the lesion model's by "
                                          f"{lesion_model.config.divisor}; use a thin model of the same depth")
    return loaded


def sees_thin_slices(slice_thickness_mm: float, slabs: list | None) -> bool:
    """Whether the network sees a volume's slices thinner than THIN_SLICE_MM: native thin slices,
    not thin slices averaged into thick slabs."""
    return slabs is None and slice_thickness_mm < THIN_SLICE_MM
