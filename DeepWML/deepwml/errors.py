"""Errors a user can act on: each names the file and the problem in one line."""

from __future__ import annotations

from pathlib import Path


class DeepWMLError(Exception):
    """Base of all errors the command line reports as one line with a non-zero exit code."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class InputImageError(DeepWMLError):
    """The input image is missing, unreadable or cannot be a FLAIR volume."""


class ModelFileError(DeepWMLError):
    """A model file is missing, truncated, tampered with or of the wrong architecture."""


class OutputExistsError(DeepWMLError):
    """An output would overwrite a file the user made; refused unless asked to overwrite."""


class ManifestError(DeepWMLError):
    """A manifest (case list) is missing columns or names files that do not exist."""


class OptionError(DeepWMLError, ValueError):
    """An option or model-card setting is out of range (checked before any work starts)."""
