"""deepwml cohort: a Dask cluster of worker processes, a worker killed mid-case, resume, BIDS.

One local cluster (2 worker processes, 1 thread each) serves the module, as a user's
``--scheduler tcp://...`` would; one test starts the command's own local cluster.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from deepwml.cli import main
from deepwml.cohort import CohortSettings, run_cohort
from deepwml.cohort.inputs import expand_inputs, flat_inputs
from deepwml.cohort.resume import finished_summary
from deepwml.cohort.runner import MARKER, STAGING
from deepwml.cohort.table import COLUMNS, DONE_BEFORE, FAILED, OK
from deepwml.cohort.task import CRASH_ONCE_ENV
from deepwml.pipeline import OutputPaths

N_CASES = 4


@pytest.fixture(scope="module")
def flairs(tmp_path_factory) -> list[Path]:
    """Four small phantoms (64x64, 8 slices): real anatomy and lesions, quick to segment."""
    from deepwml.phantom.generator import make_case

    folder = tmp_path_factory.mktemp("cohort_flairs")
    paths = []
    for i in range(N_CASES):
        path = folder / f"case{i}.nii.gz"
        sitk.WriteImage(make_case(i, 7, acquisition={"matrix": 64, "slices": 8}).flair, str(path))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def reference(flairs, tiny_model_dir, tmp_path_factory) -> Path:
    """The same inputs through ``deepwml segment`` (one process, no cluster)."""
    out = tmp_path_factory.mktemp("cohort_reference")
    assert main(["segment", *map(str, flairs), "-o", str(out), "--model", str(tiny_model_dir),
                 "--device", "cpu", "--labelmap", "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def crash_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cohort_crash") / "crash-once"


@pytest.fixture(scope="module")
def scheduler(crash_file):
    """A local cluster of two worker processes whose environment arms the crash hook."""
    from distributed import LocalCluster

    saved = dict(os.environ)  # Dask's nanny also writes OMP_NUM_THREADS=1 etc. into it for good
    os.environ[CRASH_ONCE_ENV] = str(crash_file)
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            yield cluster.scheduler_address
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _settings(model: Path, **kwargs) -> CohortSettings:
    return CohortSettings(model=str(model), device="cpu", **kwargs)


def _array(path: str | Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _assert_same_as_reference(row: dict, reference: Path, name: str) -> None:
    ref = json.loads((reference / f"{name}.summary.json").read_text())
    assert row["status"] in (OK, DONE_BEFORE), row
    assert row["total_volume_ml"] == ref["total_volume_ml"] and row["lesion_count"] == ref["lesion_count"]
    np.testing.assert_array_equal(_array(row["segmentation"]), _array(reference / f"{name}.seg.nrrd"))


def _no_leftovers(root: Path) -> None:
    assert not (root / STAGING).exists()
    hidden = [p for p in root.rglob(".*") if p.name not in (MARKER, ".bidsignore")]
    assert not hidden, hidden


def test_worker_killed_mid_case_loses_nothing(flairs, reference, tiny_model_dir, scheduler, crash_file, tmp_path):
    crash_file.write_text("armed\n")
    result = run_cohort(flairs, tmp_path / "out", _settings(tiny_model_dir), scheduler=scheduler, progress=False)
    # the hook ran: one worker removed the file and exited with os._exit in the middle of a case
    assert not crash_file.exists() and Path(f"{crash_file}.crashed").exists()
    assert result.exit_code == 0 and [r["status"] for r in result.rows] == [OK] * N_CASES
    for row, flair in zip(result.rows, flairs):
        _assert_same_as_reference(row, reference, flair.name[:-7])
    table = pd.read_parquet(result.parquet)
    assert list(table.columns) == list(COLUMNS) and len(table) == N_CASES
    assert (table["status"] == OK).all() and table["total_volume_ml"].notna().all()
    assert len(pd.read_csv(result.csv)) == N_CASES
    _no_leftovers(result.root)


def test_resume_skips_finished_and_redoes_broken(flairs, tiny_model_dir, scheduler, tmp_path, caplog):
    out = tmp_path / "out"
    settings = _settings(tiny_model_dir)
    first = run_cohort(flairs, out, settings, scheduler=scheduler, progress=False)
    assert first.count(OK) == N_CASES
    (out / "case1.summary.json").write_text('{"input": "truncated')  # a corrupted summary
    (out / "case2.seg.nrrd").unlink()  # a lost segmentation
    untouched = {p: p.stat().st_mtime_ns for p in (out / "case0.seg.nrrd", out / "case3.summary.json")}
    second = run_cohort(flairs, out, settings, scheduler=scheduler, progress=False)
    assert [r["status"] for r in second.rows] == [DONE_BEFORE, OK, OK, DONE_BEFORE]
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    assert json.loads((out / "case1.summary.json").read_text())["total_volume_ml"] == first.rows[1]["total_volume_ml"]
    assert "cannot be read" in caplog.text and "case2.seg.nrrd is missing" in caplog.text
    # another threshold is another result: every case is done again
    third = run_cohort(flairs, out, _settings(tiny_model_dir, threshold=0.3), scheduler=scheduler, progress=False)
    assert third.count(OK) == N_CASES


def test_bad_inputs_are_failed_rows(flairs, tiny_model_dir, scheduler, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(flairs[0].read_bytes()[:2000])
    inputs = [flairs[0], tmp_path / "missing.nii.gz", corrupt]
    out = tmp_path / "out"
    code = main(["cohort", *map(str, inputs), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--scheduler", scheduler, "-q"])
    assert code == 1
    table = pd.read_csv(out / "cohort.csv")
    assert list(table["status"]) == [OK, FAILED, FAILED]
    assert list(table["error"].isna()) == [True, False, False]
    assert all("\n" not in e for e in table["error"].dropna())
    err = capsys.readouterr().err
    assert f"{inputs[1]}: " in err and f"{corrupt}: " in err and "Traceback" not in err
    # nothing could be segmented: exit 2, as for deepwml segment
    assert main(["cohort", str(inputs[1]), "-o", str(tmp_path / "out2"), "--model", str(tiny_model_dir),
                 "--scheduler", scheduler, "-q"]) == 2


def test_bids_in_derivatives_out(flairs, reference, tiny_model_dir, scheduler, tmp_path):
    bids = tmp_path / "bids"
    sources = {"sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz": flairs[0],
               "sub-01/ses-2/anat/sub-01_ses-2_FLAIR.nii.gz": flairs[1],
               "sub-02/anat/sub-02_acq-axial_FLAIR.nii.gz": flairs[2],
               "sub-03/anat/sub-03_T1w.nii.gz": flairs[3]}  # not a FLAIR: not an input
    for rel, source in sources.items():
        (bids / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, bids / rel)
    (bids / "dataset_description.json").write_text('{"Name": "test", "BIDSVersion": "1.10.0"}')
    assert main(["cohort", str(bids), "--bids", "-o", str(bids), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--scheduler", scheduler, "-q"]) == 0
    deriv = bids / "derivatives" / "deepwml"
    description = json.loads((deriv / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "DeepWML"
    assert "tiny-test@0.0.1" in description["GeneratedBy"][0]["Description"]
    expected = {"sub-01/ses-1/anat/sub-01_ses-1": "case0", "sub-01/ses-2/anat/sub-01_ses-2": "case1",
                "sub-02/anat/sub-02_acq-axial": "case2"}
    made = sorted(str(p.relative_to(deriv)) for p in deriv.rglob("sub-*") if p.is_file())
    assert made == sorted(f"{stem}_desc-wmh_mask{ext}" for stem in expected for ext in (".json", ".nii.gz", ".seg.nrrd"))
    table = pd.read_csv(deriv / "cohort.csv", dtype=str)
    assert list(zip(table["subject"], table["session"].fillna(""))) == [("01", "1"), ("01", "2"), ("02", "")]
    for stem, case in expected.items():
        sidecar = json.loads((deriv / f"{stem}_desc-wmh_mask.json").read_text())
        assert sidecar["Type"] == "Lesion" and sidecar["Sources"] == [f"bids:raw:{stem}_FLAIR.nii.gz"]
        np.testing.assert_array_equal(_array(deriv / f"{stem}_desc-wmh_mask.nii.gz"), _array(reference / f"{case}_wmh.nii.gz"))
        np.testing.assert_array_equal(_array(deriv / f"{stem}_desc-wmh_mask.seg.nrrd"),
                                      _array(reference / f"{case}.seg.nrrd"))


def test_own_local_cluster_matches_segment(flairs, reference, tiny_model_dir, tmp_path):
    """Without --scheduler the command starts (and stops) its own local cluster."""
    out = tmp_path / "out"
    assert main(["cohort", str(flairs[0].parent), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--workers", "1", "-q"]) == 0
    table = pd.read_parquet(out / "cohort.parquet")
    assert len(table) == N_CASES
    for row, flair in zip(table.to_dict("records"), flairs):
        _assert_same_as_reference(row, reference, flair.name[:-7])


def test_output_folder_of_someone_else_is_refused(flairs, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["cohort", str(flairs[0]), "-o", str(out), "--model", str(tiny_model_dir), "-q"]) == 2
    assert "is not empty (notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_input_discovery(flairs, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# cohort\n{flairs[1]}\n\n{flairs[0].name}\n")
    shutil.copy(flairs[0], tmp_path / flairs[0].name)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"case;flair\na;{flairs[2]}\n", encoding="utf-8-sig")  # Excel: BOM and semicolons
    dicom_like = tmp_path / "series"
    dicom_like.mkdir()
    assert expand_inputs([listing, manifest, dicom_like, flairs[0].parent]) == [
        flairs[1], tmp_path / flairs[0].name, flairs[2], dicom_like, *flairs]
    # outputs inside an input folder are not taken for inputs on the next run
    out = flairs[0].parent / "out"
    out.mkdir(exist_ok=True)
    shutil.copy(flairs[0], out / "case0_wmh.nii.gz")
    try:
        assert [i.path for i in flat_inputs([flairs[0].parent], out)] == flairs
    finally:
        shutil.rmtree(out)
    # same file names in two folders get the folder in their output name
    names = [i.name for i in flat_inputs([tmp_path / flairs[0].name, flairs[0]])]
    assert names[0] != names[1] and all(n.endswith("case0") for n in names)


def test_resume_check_reasons(tmp_path):
    outputs = OutputPaths.for_case(tmp_path, "c", False, False)
    settings = {"threshold": 0.5}
    assert finished_summary(outputs, "/in.nii.gz", ("abc",), settings) == (None, "")
    outputs.segmentation.write_bytes(b"seg")
    good = {"input": "/in.nii.gz", "model": {"weights_sha256": "abc"}, "cohort": {"settings": settings}}
    outputs.summary.write_text(json.dumps(good))
    assert finished_summary(outputs, "/in.nii.gz", ("abc",), settings)[0] == good
    # a thin volume's summary names the thin-slice model's weights: done when the run has that thin model
    thin = {**good, "model": {"weights_sha256": "thin"}}
    outputs.summary.write_text(json.dumps(thin))
    assert finished_summary(outputs, "/in.nii.gz", ("abc", "thin"), settings)[0] == thin
    assert "other model weights" in finished_summary(outputs, "/in.nii.gz", ("abc",), settings)[1]
    outputs.summary.write_text(json.dumps(good))
    for changed, reason in (({"input": "/other.nii.gz"}, "another input"),
                            ({"model": {"weights_sha256": "def", "id": "m@2"}}, "other model weights (m@2)"),
                            ({"cohort": {"settings": {"threshold": 0.3}}}, "other settings")):
        outputs.summary.write_text(json.dumps({**good, **changed}))
        summary, why = finished_summary(outputs, "/in.nii.gz", ("abc",), settings)
        assert summary is None and reason in why
    outputs.summary.write_text("[1, 2]")
    assert "not a JSON object" in finished_summary(outputs, "/in.nii.gz", ("abc",), settings)[1]
