"""An output folder a batch can own: unique names, writable, one run at a time.

Why: inputs with the same file name (``caseNNNN/flair.nii.gz``, MICCAI's
``<site>/<id>/pre/FLAIR.nii.gz``) all mapped to one ``flair.seg.nrrd``: without
``--overwrite`` inputs 2.. failed on a file the same batch had written, with it one file held
the last case and the batch summary pointed three inputs at it. Two runs into one folder both
exited 0 while one replaced the other's outputs (once a mixed set from two cases). A read-only
folder was noticed only after inference, with a traceback. All of this is settled here, before
any input is read.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .errors import DeepWMLError

log = logging.getLogger(__name__)

LOCK_NAME = ".deepwml.lock"


class OutputFolderError(DeepWMLError):
    """The output folder cannot be used (not a folder, not writable, in use by another run)."""


def unique_case_names(inputs: Sequence[str | Path], names: Sequence[str]) -> list[str]:
    """Output names for ``inputs`` (``names`` are their plain case names), unique in the batch.

    A name shared by several inputs gets as many parent folder names as it takes to tell them
    apart (``case0001/flair.nii.gz`` -> ``case0001_flair``); names are compared ignoring case,
    as macOS and Windows file systems do. An input listed twice is refused: its outputs
    would be written twice.
    """
    resolved = [Path(p).resolve() for p in inputs]
    seen: dict[Path, int] = {}
    for i, path in enumerate(resolved):
        if path in seen:
            raise OutputFolderError(inputs[i], f"is listed twice (inputs {seen[path] + 1} and {i + 1})")
        seen[path] = i
    result = list(names)
    depth = 0
    while True:
        clashes = _clashing(result)
        if not clashes:
            return result
        depth += 1
        for i in clashes:
            parents = [p.name for p in resolved[i].parents][:depth][::-1]
            result[i] = "_".join([*parents, names[i]])


def _clashing(names: Iterable[str]) -> set[int]:
    by_key: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_key.setdefault(name.casefold(), []).append(i)
    return {i for group in by_key.values() if len(group) > 1 for i in group}


def prepare_output_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove it is writable, before any work is done."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(folder, "is a file, not a folder; name an output folder with -o")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".deepwml-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputFolderError(folder, f"cannot be written ({err.strerror or err})") from None
    return folder


def _lock_holder_alive(info: dict) -> bool:
    """False only when the lock was taken on this host by a process that no longer exists."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder/.deepwml.lock`` (created with O_EXCL) while a run writes into the folder.

    A second run into the same folder is refused at once. A lock left by a process that was
    killed (same host, pid gone) is taken over; otherwise the message says how to clear it.
    """
    lock = Path(folder) / LOCK_NAME
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                holder = {}
            if attempt == 0 and holder and not _lock_holder_alive(holder):
                log.warning("%s: taking over the lock of an ended run (pid %s)", lock, holder.get("pid"))
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            who = (f"'{holder.get('command')}' (pid {holder.get('pid')} on {holder.get('host')}, "
                   f"since {holder.get('started')})" if holder else "another run")
            raise OutputFolderError(folder, f"is in use by {who}; wait for it, use another folder, or "
                                            f"delete {lock} if that run has ended") from None
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise OutputFolderError(folder, f"cannot be written ({err.strerror})") from None
            raise
    else:  # pragma: no cover - the loop breaks or raises
        raise OutputFolderError(folder, "could not be locked")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def refuse_clash(path: Path, planned: Iterable[Path], what: str) -> None:
    """Refuse ``path`` when it is one of the ``planned`` outputs of the same run."""
    target = path.resolve()
    if any(target == p.resolve() for p in planned):
        raise OutputFolderError(path, f"is also the path of a per-case output of this run; choose "
                                      f"another {what}")


@contextlib.contextmanager
def owned_output_folder(folder: str | Path, command: str, overwrite: bool,
                        resume_marker: str | None = None) -> Iterator[Path]:
    """Prepare, lock and claim ``folder`` for a command that writes many files into it.

    Why: ``consensus`` and ``evaluate`` checked only their HTML report, so the user's other files
    with the names of their CSVs and figures were replaced; ``phantom`` replaced
    ``case0000/flair.nii.gz`` when no manifest was there. Without ``overwrite`` the folder must
    be empty (or new); with it, the command's files replace same-named ones and nothing else
    is touched. A resumable command (``cohort``) names a ``resume_marker`` file: it is created
    in the folder, and a folder holding it is the command's own and may be continued.
    """
    folder = prepare_output_folder(folder)
    with output_lock(folder, f"deepwml {command}"):
        resuming = resume_marker is not None and (folder / resume_marker).is_file()
        present = [] if resuming else sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                                             if p.is_file() and p.name != LOCK_NAME)
        if present and not overwrite:
            shown = ", ".join(present[:3]) + (f" and {len(present) - 3} more" if len(present) > 3 else "")
            raise OutputFolderError(folder, f"is not empty ({shown}); {command} writes many files here: use a "
                                            "new folder, or pass --overwrite to replace its earlier outputs")
        if resume_marker is not None:
            (folder / resume_marker).touch()
        yield folder


F = TypeVar("F", bound=Callable[..., Any])


def writes_output_folder(command: str, folder_arg: str = "out_dir", overwrite_arg: str = "overwrite"
                         ) -> Callable[[F], F]:
    """Run the decorated function inside :func:`owned_output_folder` of its ``folder_arg``."""
    def decorate(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with owned_output_folder(bound.arguments[folder_arg], command, bool(bound.arguments[overwrite_arg])):
                return func(*args, **kwargs)
        return run  # type: ignore[return-value]
    return decorate
