"""The WMH terminology entry: shipped as ``.term.json`` files and loaded at Slicer start-up.

The segment's terminology string (``deepwml.segmentation_io.terminology_string``) names the
contexts in these files, so Slicer's terminology selector finds the entry instead of opening
empty (SCT "Lesion" is not in the category the Slicer General Anatomy list files it under).
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

TERMINOLOGY_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Terminology"
CATEGORY_TYPE_FILE = TERMINOLOGY_DIR / "SegmentationCategoryTypeModifier-DeepWML.term.json"
REGION_FILE = TERMINOLOGY_DIR / "AnatomicRegionAndModifier-DeepWML.term.json"


def load(terminologies_logic) -> Tuple[str, str]:
    """Load both files into ``terminologies_logic`` (``slicer.modules.terminologies.logic()`` in
    the app); return the (terminology, region) context names, empty on failure."""
    terminology = terminologies_logic.LoadTerminologyFromFile(str(CATEGORY_TYPE_FILE))
    region = terminologies_logic.LoadRegionContextFromFile(str(REGION_FILE))
    return terminology, region


def load_at_startup() -> None:
    """Called on the application's ``startupCompleted()`` (as SlicerMONAIAuto3DSeg does)."""
    import logging

    import slicer

    names = load(slicer.modules.terminologies.logic())
    if not all(names):
        logging.warning("DeepWML: could not load its terminology files from %s", TERMINOLOGY_DIR)
