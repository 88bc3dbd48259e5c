"""What a cohort run segments with: one picklable record the client sends to every worker.

Why a record: a worker on another machine must build the same :class:`~deepwml.segmenter.Segmenter`
as the client asked for, and a resumed run must recognise outputs made with other settings
(those cases are redone, see :mod:`.resume`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..defaults import (DEFAULT_MARGIN_MM, DEFAULT_MESIAL_TEMPORAL_MODEL, DEFAULT_WHITE_MATTER_MODEL, THIN_SLAB_MM,
                        default_flip_tta)


@dataclass(frozen=True)
class CohortSettings:
    """Segmentation settings of a cohort; the fields mirror ``deepwml segment``'s options."""

    model: str | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 8
    #: None: deepwml.defaults.default_flip_tta (on, except for int8)
    tta: bool | None = None
    head_crop: bool = True
    backend: str = "auto"
    thin_slab_mm: float = THIN_SLAB_MM
    threshold: float | None = None
    labelmap: bool = False
    probabilities: bool = False
    series: tuple[str, ...] = ()
    #: brain-mask model ("bundled", a folder, or None: no brain mask); see deepwml.brain_mask
    brain_model: str | None = "bundled"
    brain_margin_mm: float = DEFAULT_MARGIN_MM
    #: thin-slice model ("auto", "bundled", a folder, or None); see deepwml.thin_model
    thin_model: str | None = "auto"
    #: thin_slab_mm is a sliding slab around every thin slice (Segmenter.thin_slab_sliding)
    thin_slab_sliding: bool = False
    #: --contrast-floor: None = the model card's floor, 0 = none, K = voxels below K x white matter removed
    contrast_floor: float | None = None
    #: white-matter model ("bundled", a folder, or None: marks kept wherever they lie); see deepwml.white_matter
    white_matter_model: str | None = DEFAULT_WHITE_MATTER_MODEL
    #: mesial-temporal model ("bundled", a folder, or None: no exclusion; only with a white-matter model);
    #: see deepwml.mesial_temporal
    mesial_temporal_model: str | None = DEFAULT_MESIAL_TEMPORAL_MODEL

    def segmenter_key(self) -> tuple[Any, ...]:
        """What makes two Segmenters different (a worker keeps one per key)."""
        return (self.model, self.device, self.precision, self.batch_size, self.tta, self.head_crop,
                self.backend, self.thin_slab_mm, self.brain_model, self.brain_margin_mm, self.thin_model,
                self.thin_slab_sliding, self.contrast_floor, self.white_matter_model, self.mesial_temporal_model)

    def fingerprint(self, model_threshold: float, thin: "ModelIdentity | None" = None) -> dict[str, Any]:
        """The settings that change a case's outputs, as JSON values (recorded in each summary).

        Device, backend and batch size are left out: they change speed, not the mask's meaning.
        ``thin``: the thin-slice model the setting resolved to (by its weights: a folder path
        differs between machines, "auto" between versions).
        """
        values = asdict(self)
        for key in ("model", "device", "backend", "batch_size"):
            values.pop(key)
        values["thin_model"] = None if thin is None else thin.record()
        values["brain_mask"] = values.pop("brain_model") is not None  # a path differs between machines
        if values.pop("white_matter_model") is not None:  # none: as before the restriction, earlier cohorts resume
            values["white_matter"] = True
        # none (or no white-matter restriction): as before the exclusion, earlier cohorts resume
        if values.pop("mesial_temporal_model") is not None and self.white_matter_model is not None:
            values["mesial_temporal"] = True
        values["threshold"] = model_threshold if self.threshold is None else self.threshold
        # what runs, not how it was asked for: a resumed cohort from before TTA was the default re-runs
        values["tta"] = default_flip_tta(self.precision) if self.tta is None else self.tta
        values["series"] = list(self.series)
        if not self.thin_slab_sliding:  # consecutive slabs, as before the option: earlier cohorts still resume
            values.pop("thin_slab_sliding")
        if self.contrast_floor is None:  # the card's floor: the model's weights already identify it
            values.pop("contrast_floor")
        return values


@dataclass(frozen=True)
class ModelIdentity:
    """The model a cohort runs, checked once on the client before any worker starts."""

    id: str
    weights_sha256: str
    threshold: float

    def record(self) -> dict[str, str]:
        """What outputs record of the model: its id and weights' SHA-256 (not its path, which
        differs between machines)."""
        return {"id": self.id, "weights_sha256": self.weights_sha256}


def model_identity(model: str | None, thin_model: str | None = None) -> tuple[ModelIdentity, ModelIdentity | None]:
    """Load and verify the model and the thin-slice model it resolves to once on the client
    (card, weights hash, architecture); the thin one is None when thin volumes go to ``model``.

    Why on the client: a missing or altered model must stop the run with one line before a
    cluster starts, and the weights hash is what resumed summaries are checked against.
    """
    from ..model_files import load_model
    from ..thin_model import resolve_thin_model

    loaded = load_model(model, framework="numpy")
    thin = resolve_thin_model(thin_model, loaded)
    return _identity(loaded), None if thin is None else _identity(thin)


def _identity(loaded: Any) -> ModelIdentity:
    return ModelIdentity(loaded.model_id, loaded.card["weights_sha256"], loaded.threshold)
