"""Writing results safely: temporary file, verification, atomic rename.

Every output is written to a hidden temporary file beside its final name, checked, and only
then renamed into place, so a crash, a kill or a full disk never leaves a half-written file
under a final name next to a radiologist's data. :func:`publish_together` extends this to a
group (one case's segmentation, maps and summary: all or none).
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import os
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import SimpleITK as sitk

from .errors import DeepWMLError, OutputExistsError, OutputWriteError, itk_reason
from .nifti_check import check_nifti

#: (temporary, final) pairs waiting for the end of a :func:`publish_together` block.
_pending: contextvars.ContextVar[Optional[List[Tuple[Path, Path]]]] = contextvars.ContextVar(
    "deepwml_pending_outputs", default=None)


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Refuse to replace a file the user may have edited, unless told to."""
    if path.exists() and not overwrite:
        raise OutputExistsError(path, "already exists; refusing to overwrite it (pass --overwrite)")


@contextlib.contextmanager
def atomic_output(path: str | Path, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name keeps the final suffix (``.seg.nrrd``, ``.nii.gz``) because writers
    pick the format from it. ``verify(tmp)`` runs before the rename. Inside
    :func:`publish_together` the rename waits for the end of that block. Any OS error (full
    disk, permissions) becomes one :class:`OutputWriteError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}-", suffix="".join(path.suffixes) or ".tmp",
                                   dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise OutputWriteError(path, f"cannot be written ({err.strerror or err})") from None
    tmp_path = Path(tmp)
    handed_over = False
    try:
        yield tmp_path
        if verify is not None:
            try:
                verify(tmp_path)
            except DeepWMLError as err:
                raise OutputWriteError(path, f"was not written completely ({err.problem}); is the disk "
                                             "full? Nothing was published") from None
        # after the writer: mkstemp makes 0600 and some writers (safetensors) recreate the file
        os.chmod(tmp_path, _file_mode())
        pending = _pending.get()
        if pending is None:
            os.replace(tmp_path, path)
        else:
            pending.append((tmp_path, path))
            handed_over = True
    except OSError as err:
        raise OutputWriteError(path, f"could not be written ({err.strerror or err})") from None
    finally:
        if not handed_over and tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def publish_together() -> Iterator[None]:
    """Outputs written in this block are renamed into place together, after all succeeded.

    Why: a case's segmentation without its summary (or a summary whose maps are missing) is
    a partial result; a failure anywhere in the block publishes none of the block's files.
    """
    pending: list[tuple[Path, Path]] = []
    token = _pending.set(pending)
    try:
        yield
        for i, (tmp, final) in enumerate(pending):
            try:
                os.replace(tmp, final)
            except OSError as err:
                raise OutputWriteError(final, f"could not be written ({err.strerror or err})") from None
            pending[i] = (final, final)
    finally:
        _pending.reset(token)
        for tmp, final in pending:
            if tmp != final and tmp.exists():
                tmp.unlink()


def verify_image_file(path: Path) -> None:
    """Raise unless the image file just written reads back completely (see module docstring)."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        check_nifti(path)
        return
    if name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as handle:
                while handle.read(1 << 22):
                    pass
        except (EOFError, OSError, zlib.error) as err:
            raise OutputWriteError(path, f"is truncated or corrupt ({err})") from None
        return
    try:
        sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise OutputWriteError(path, f"does not read back ({itk_reason(err)})") from None


def write_image_atomic(image: sitk.Image, path: str | Path, compress: bool = True) -> None:
    """Write an image through :func:`atomic_output`, verified before it is published."""
    with atomic_output(path, verify=verify_image_file) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), compress)
        except RuntimeError as err:
            raise OutputWriteError(path, f"could not be written ({itk_reason(err)})") from None


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Run ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_output(path) as tmp:
        writer(tmp)


def write_csv(path: str | Path, rows: List[dict], fields: Optional[List[str]] = None) -> None:
    """Write ``rows`` as CSV atomically; ``fields`` default to every key in order of first use."""
    import csv

    columns = fields or list(dict.fromkeys(k for row in rows for k in row))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    write_with(path, write)
