"""Errors a user can act on: each names the file and the problem in one line."""

from __future__ import annotations

import re
from pathlib import Path


class DeepWMLError(Exception):
    """Base of all errors the command line reports as one line with a non-zero exit code."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):
        # picklable as itself (not as Exception(message)), so a worker process's refusal reaches
        # the command line as the same one-line error
        return self.__class__, (self.path, self.problem)


class InputImageError(DeepWMLError):
    """The input image is missing, unreadable or cannot be a FLAIR volume."""


class ModelFileError(DeepWMLError):
    """A model file is missing, truncated, tampered with or of the wrong architecture."""


class OutputExistsError(DeepWMLError):
    """An output would overwrite a file the user made; refused unless asked to overwrite."""


class OutputWriteError(DeepWMLError):
    """An output could not be written completely (full disk, permissions); nothing was published."""


class ManifestError(DeepWMLError):
    """A manifest (case list) is missing columns or names files that do not exist."""


class OptionError(DeepWMLError, ValueError):
    """An option or model-card setting is out of range (checked before any work starts)."""


class LabelError(DeepWMLError):
    """A lesion label cannot be compared with its FLAIR; scoring it would give a wrong number."""


class LabelGeometryError(LabelError):
    """A label is not on its FLAIR's voxel grid (size, spacing, origin or direction)."""


class LabelEncodingError(LabelError):
    """A label is not a binary mask (probability map, several classes without a declared
    lesion value)."""


#: Lines of an ITK exception that say where, not what ("Exception thrown in ... .cxx:99:").
_ITK_LOCATION = re.compile(r"^(Exception thrown in .*|.*\.(cxx|hxx|h|cpp):\d+:?)$")
_ITK_PREFIX = re.compile(r"^(sitk::ERROR:|ITK ERROR:|Description:)\s*(\w+\(0x[0-9a-f]+\):\s*)?", re.I)


def itk_reason(err: BaseException, limit: int = 200) -> str:
    """The reason of a SimpleITK/ITK error in one line, without source locations.

    ITK puts a source location on the first line ("Exception thrown in ... .cxx:99:") and the
    reason ("Unable to determine ImageIO reader", "ITK only supports orthonormal direction
    cosines") on the next ones; users need the reason.
    """
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    reasons = [_ITK_PREFIX.sub("", ln) for ln in lines if not _ITK_LOCATION.match(ln)]
    reason = " ".join(r for r in reasons if r) or (lines[0] if lines else "unknown error")
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."
