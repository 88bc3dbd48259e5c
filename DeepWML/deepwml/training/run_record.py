"""What defines a training run: recorded when it starts, checked every time it resumes.

Why: resuming accepted a changed crop, augmentation, steps per epoch or validation subset, and
even different images under the same case IDs, and then overwrote ``train_config.json``, so
the settings of the first epochs were lost and the model card described a run that never
happened. Now ``train_config.json`` keeps the first session's settings and the SHA-256 of
every image and label, each later session is appended to its history, and a resume with other
run-defining settings or other data is refused before anything is trained.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from ..errors import DeepWMLError
from ..model_files import sha256_of
from ..output_files import write_with
from .manifest import Case

log = logging.getLogger(__name__)

RECORD_NAME = "train_config.json"
#: Settings a later session of the same run may change: how long and how fast to go on
#: (lowering the learning rate for a second stage is a legitimate schedule), where and in
#: which precision to run, and the model card's labels. Everything else defines the run.
MAY_CHANGE = ("epochs", "lr", "device", "precision", "name", "version", "notes", "workers", "max_minutes")


def data_fingerprint(cases: Iterable[Case]) -> dict[str, dict[str, Any]]:
    """SHA-256 of each case's FLAIR and label file (and the declared lesion value)."""
    return {c.case: {"flair": sha256_of(c.flair), "label": sha256_of(c.label) if c.label else "",
                     "label_value": c.label_value} for c in cases}


def _read(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DeepWMLError(path, f"cannot be read ({err}); restore it or pass --restart") from None
    if not isinstance(record, dict):
        raise DeepWMLError(path, "is not a training record; restore it or pass --restart")
    return record


def check_resume(out_dir: Path, config: Any, fingerprint: dict[str, dict[str, Any]]) -> None:
    """Refuse to resume the run in ``out_dir`` with other run-defining settings or data."""
    path = out_dir / RECORD_NAME
    if not path.exists():
        raise DeepWMLError(out_dir, f"holds a checkpoint but no {RECORD_NAME}, so its settings are "
                                    "unknown; pass --restart (the checkpoint is kept) or use another folder")
    record = _read(path)
    first = record.get("config", record)  # records written before this module were flat
    current = asdict(config)
    changed = [f"{k} {first[k]!r} -> {current[k]!r}" for k in current
               if k not in MAY_CHANGE and k in first and first[k] != current[k]]
    hint = ("; resume with the same settings, pass --restart, or start a new folder with "
            f"--init {out_dir / 'model'} to continue from this model with other settings")
    if changed:
        raise DeepWMLError(out_dir, f"holds a run with other settings ({', '.join(changed)}){hint}")
    recorded = record.get("data_sha256")
    if recorded is None:
        return
    added = sorted(set(fingerprint) - set(recorded))
    removed = sorted(set(recorded) - set(fingerprint))
    altered = sorted(c for c in set(fingerprint) & set(recorded) if fingerprint[c] != recorded[c])
    problems = [f"{what}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}"
                for what, ids in (("other images or labels under the same case IDs", altered),
                                  ("cases added", added), ("cases removed", removed)) if ids]
    if problems:
        raise DeepWMLError(out_dir, f"holds a run trained on other data ({'; '.join(problems)}){hint}")


def write_record(out_dir: Path, config: Any, fingerprint: dict[str, dict[str, Any]], start_epoch: int,
                 manifest: Path, initialised_from: dict[str, Any] | None = None) -> None:
    """Start the record of a new run, or append this session to an existing run's history.
    ``initialised_from``: the model a new run starts from (``--init``: id, path, weights
    SHA-256, and the threshold and contrast floor its card reads the network's output with, which the
    fine-tune inherits), kept for its later sessions (:func:`recorded_init`)."""
    path = out_dir / RECORD_NAME
    session = {"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "from_epoch": start_epoch, "manifest": str(manifest),
               **{k: asdict(config)[k] for k in MAY_CHANGE}}
    if start_epoch == 0 or not path.exists():
        record = {"config": asdict(config), "data_sha256": fingerprint, "sessions": [session],
                  **({"initialised_from": initialised_from} if initialised_from else {})}
    else:
        record = _read(path)
        if "config" not in record:  # a flat record from before: keep it as the first settings
            record = {"config": record}
        record.setdefault("data_sha256", fingerprint)
        if initialised_from:  # records from before it was kept: the resumed run's recorded start
            record.setdefault("initialised_from", initialised_from)
        record.setdefault("sessions", []).append(session)
    write_with(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8"))


def recorded_init(out_dir: Path) -> dict[str, Any] | None:
    """The model the run in ``out_dir`` started from, as its first session found it: from the
    run record, or (runs recorded before it kept this) from the card its earlier sessions wrote
    into ``out_dir/model``. None when neither says. Why: ``--init`` is a path, and what lies
    there can change between sessions (the bundled model is replaced by the model it helped
    make), while the weights this run descends from do not."""
    path = out_dir / RECORD_NAME
    if path.exists():
        found = _read(path).get("initialised_from")
        if found:
            return found
    card = out_dir / "model" / "model.json"
    if card.exists():
        try:
            return json.loads(card.read_text(encoding="utf-8")).get("training", {}).get("initialised_from")
        except (OSError, ValueError):
            return None
    return None


def set_aside(out_dir: Path, names: Iterable[str]) -> list[str]:
    """On --restart: rename the previous run's files (``model`` -> ``model.before-restart-STAMP``)
    so that nothing of it is lost; return the new names."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = []
    for name in names:
        old = out_dir / name
        if not old.exists():
            continue
        stem, dot, suffix = name.partition(".")
        new = out_dir / f"{stem}.before-restart-{stamp}{dot}{suffix}"
        old.rename(new)
        kept.append(new.name)
    if kept:
        log.warning("--restart: kept the previous run's %s", ", ".join(kept))
    return kept
