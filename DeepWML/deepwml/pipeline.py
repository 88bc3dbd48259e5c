"""Segment files on disk: the one code path behind the command line and the Slicer module."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection

import SimpleITK as sitk

from . import __version__
from .image_io import load_flair
from .known_limits import cautions
from .output_files import publish_together, refuse_existing, write_with
from .lesion_summary import lesion_summary
from .read_ahead import ReadAhead
from .segmentation_io import write_labelmap, write_probabilities, write_seg_nrrd
from .segmenter import ProgressCallback, SegmentationResult, Segmenter

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def int8_fallback_share(summary: dict[str, Any]) -> float | None:
    """A summary's ``int8_fallback`` as one number for tables (CSV, the cohort's): the share of the head beyond the
    int8 graph's input range where float32 ran instead; None where it did not (or int8 was not asked)."""
    return (summary.get("int8_fallback") or {}).get("head_share_above_input_range")


def case_name(path: Path) -> str:
    """File name without image suffixes (``sub-01_FLAIR.nii.gz`` -> ``sub-01_FLAIR``)."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class OutputPaths:
    segmentation: Path
    summary: Path
    labelmap: Path | None = None
    probabilities: Path | None = None

    @classmethod
    def for_case(cls, out_dir: Path, name: str, labelmap: bool, probabilities: bool) -> "OutputPaths":
        return cls(out_dir / f"{name}.seg.nrrd", out_dir / f"{name}.summary.json",
                   out_dir / f"{name}_wmh.nii.gz" if labelmap else None,
                   out_dir / f"{name}_probabilities.nii.gz" if probabilities else None)

    def all(self) -> list[Path]:
        return [p for p in (self.segmentation, self.summary, self.labelmap, self.probabilities) if p]


def plan_outputs(input_path: Path, out_dir: Path, name: str | None, labelmap: bool, probabilities: bool,
                 overwrite: bool) -> OutputPaths:
    """A case's output paths, refused (before any work) if one exists and ``overwrite`` is off."""
    paths = OutputPaths.for_case(out_dir, name or case_name(input_path), labelmap, probabilities)
    for path in paths.all():
        refuse_existing(path, overwrite)
    return paths


def write_outputs(input_path: Path, paths: OutputPaths, image: sitk.Image, result: SegmentationResult,
                  segmenter: Segmenter, read_s: float, t0: float) -> dict[str, Any]:
    """Write a segmented case's files, published together (all or none); return its summary.
    ``t0`` is when reading the case began, ``read_s`` how long reading took.

    The lesions are labelled and counted (:func:`lesion_summary`, ~15-40 ms for 24x512x512) in a
    thread while the files are written: SimpleITK and zlib release the GIL, so on 2 cores the two
    overlap (issue 14: the time that is not the network); the summary's ``write`` includes it."""
    t1 = time.perf_counter()
    mask = result.mask
    with ThreadPoolExecutor(1, thread_name_prefix="deepwml-lesions") as pool:
        lesions = pool.submit(lesion_summary, mask)
        with publish_together():
            write_seg_nrrd(mask, paths.segmentation)
            if paths.labelmap:
                write_labelmap(mask, paths.labelmap)
            if paths.probabilities:
                write_probabilities(result.probabilities, paths.probabilities)
            summary = _summary(input_path, paths, image, result, segmenter, read_s, t0, t1, lesions.result())
            write_with(paths.summary, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n",
                                                                 encoding="utf-8"))
    return summary


def segment_file(input_path: str | Path, out_dir: str | Path, segmenter: Segmenter,
                 threshold: float | None = None, labelmap: bool = False,
                 probabilities: bool = False, overwrite: bool = False,
                 progress: ProgressCallback | None = None, name: str | None = None,
                 series: Collection[str] = (), read_ahead: ReadAhead | None = None) -> dict[str, Any]:
    """Read, segment and write one volume; return its summary (also written as JSON).

    All outputs are checked before any is written, so a refusal leaves nothing behind, and
    they are published together (all or none). ``name`` replaces the input's file name as the
    outputs' stem (a batch uses it to keep same-named inputs apart); ``series`` are DICOM series
    UIDs to choose from a folder holding several. A batch of many files overlaps these steps
    across files: :func:`deepwml.batch.segment_files`. ``read_ahead``: this input already being
    read (:class:`deepwml.read_ahead.ReadAhead`, started before the model loaded); ``read`` in the
    summary's timings is then only the wait for it, the part not hidden behind loading.
    """
    input_path = Path(input_path)
    if read_ahead is not None and (read_ahead.path != input_path or read_ahead.series != tuple(series)):
        raise ValueError(f"read_ahead reads {read_ahead.path}, not {input_path}")
    paths = plan_outputs(input_path, Path(out_dir), name, labelmap, probabilities, overwrite)
    t0 = time.perf_counter()
    image = read_ahead.image() if read_ahead is not None else load_flair(input_path, series)
    read_s = time.perf_counter() - t0
    result = segmenter.segment(image, threshold, progress)
    return write_outputs(input_path, paths, image, result, segmenter, read_s, t0)


def _summary(input_path: Path, paths: OutputPaths, image: sitk.Image, result: SegmentationResult,
             segmenter: Segmenter, read_s: float, t0: float, t1: float, lesions: dict[str, Any]) -> dict[str, Any]:
    """The per-case summary (written as JSON and returned for batch summaries); ``lesions`` is
    :func:`lesion_summary` of the mask."""
    write_s = time.perf_counter() - t1
    summary = {
        "input": str(input_path),
        "segmentation": str(paths.segmentation),
        "labelmap": str(paths.labelmap) if paths.labelmap else None,
        "probabilities": str(paths.probabilities) if paths.probabilities else None,
        "size": list(image.GetSize()),
        "spacing_mm": [round(s, 5) for s in image.GetSpacing()],
        "threshold": result.threshold,
        **lesions,
        "timings_s": {"read": round(read_s, 4), **{k: round(v, 4) for k, v in result.timings_s.items()},
                      "write": round(write_s, 4), "end_to_end": round(time.perf_counter() - t0, 4)},
        "device": result.device,
        "precision": result.precision,  # float32 also under --precision int8 where int8_fallback says why
        "int8_fallback": result.int8_fallback,
        "head_crop": segmenter.head_crop,
        "flip_tta": segmenter.flip_tta,  # averaged with the left-right flipped slice
        "backend": result.backend,
        "slab_mm": result.slab_mm,  # thin-slice volume seen as slabs of this thickness; 0 = native slices
        "slab_sliding": result.slab_sliding,  # one slab centred on every thin slice (--sliding-slab-mm)
        # what the brain mask did (None: no brain mask); see deepwml.brain_mask
        "brain_mask": result.brain_mask_summary(),
        # marks darker than factor x the white-matter level removed (None: no floor); deepwml.contrast_floor
        "contrast_floor": result.contrast_floor_summary(),
        # marked components away from the white matter removed (None: no white-matter model); deepwml.white_matter
        "white_matter": result.white_matter_summary(),
        # where this model is known to be weak for this input, with its card's measured figures
        "cautions": cautions(result.known_limits(), lesions["total_volume_ml"]),
        # the lesion model that ran on this volume: the thin-slice model's on thin slices (deepwml.thin_model)
        "model": {"id": result.model.model_id, "path": str(result.model.path),
                  "weights_sha256": result.model.card.get("weights_sha256"), "ran": result.ran_file,
                  "thin_slice_model": result.model is not segmenter.model},
        "engine_version": __version__,
    }
    return summary
