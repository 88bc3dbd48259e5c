""":func:`deepwml.image_io.load_flair` of one input in a background thread, started first.

Why: a one-volume ``deepwml segment`` is mostly start-up (issue 14: the cold start). Reading
and decompressing the volume (0.06-0.11 s for a 24x512x512 ``.nii.gz`` on the 2-core CPU) does
not need the model, and SimpleITK releases the GIL while it reads, so it can run on the second
core while the rest starts. This module imports nothing heavy: the thread itself imports
numpy and SimpleITK and reads, while the main thread imports ONNX Runtime and loads and checks
the models (the command line's parser needs none of them, :mod:`deepwml.defaults`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection

if TYPE_CHECKING:
    import SimpleITK as sitk


class ReadAhead:
    """One input being read and validated in a thread; :meth:`image` waits for it and re-raises
    what reading raised (the same one-line errors as reading in place)."""

    def __init__(self, path: str | Path, series: Collection[str] = ()) -> None:
        self.path, self.series = Path(path), tuple(series)
        self._image: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="deepwml-read-ahead", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            from .image_io import load_flair

            self._image = load_flair(self.path, self.series)
        except BaseException as err:  # handed to the caller by image()
            self._error = err

    def finish(self) -> None:
        """Wait for the reader (a command that fails before using the image still ends with no
        thread inside SimpleITK while the interpreter shuts down)."""
        self._thread.join()

    def image(self) -> "sitk.Image":
        """The validated image, once read; raises what reading raised."""
        self.finish()
        if self._error is not None:
            raise self._error
        assert self._image is not None
        return self._image
