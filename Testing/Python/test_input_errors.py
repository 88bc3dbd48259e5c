"""Every bad input gets one clear line naming the file and the problem, exit code 2,
and leaves no output behind."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import synthetic_flair
from deepwml.cli import main


def run_cli(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def write(img: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(img, str(path))
    return path


def bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    arr = np.ones((5, 32, 32), np.float32)
    nan = arr.copy() * 100
    nan[2, 3, 3] = np.nan
    four_d = sitk.JoinSeries([synthetic_flair(size=(16, 16, 4)), synthetic_flair(size=(16, 16, 4), seed=1)])
    corrupt = tmp / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    truncated = tmp / "truncated.nii.gz"
    write(synthetic_flair(), tmp / "full.nii.gz")
    truncated.write_bytes((tmp / "full.nii.gz").read_bytes()[:300])
    return {
        "missing": (tmp / "nope.nii.gz", "file not found"),
        "corrupt": (corrupt, "corrupt"),
        "truncated": (truncated, "truncated"),
        "2d": (write(sitk.GetImageFromArray(np.ones((32, 32), np.float32)), tmp / "flat.nii.gz"), "is 2D"),
        "single_slice": (write(sitk.GetImageFromArray(np.ones((1, 32, 32), np.float32)), tmp / "one.nrrd"),
                         "single slice"),
        "4d": (write(four_d, tmp / "fourd.nii.gz"), "is 4D"),
        "empty": (write(sitk.GetImageFromArray(arr * 0), tmp / "empty.nii.gz"), "empty"),
        "constant": (write(sitk.GetImageFromArray(arr * 7), tmp / "constant.mha"), "constant"),
        "nan": (write(sitk.GetImageFromArray(nan), tmp / "nan.nrrd"), "NaN"),
        "rgb": (write(sitk.Compose([synthetic_flair(size=(16, 16, 4))] * 3), tmp / "rgb.mha"), "components"),
    }


@pytest.mark.parametrize("kind", ["missing", "corrupt", "truncated", "2d", "single_slice", "4d",
                                  "empty", "constant", "nan", "rgb"])
def test_bad_input_is_one_clear_line(kind, tmp_path, capsys, tiny_model_dir):
    path, problem = bad_inputs(tmp_path)[kind]
    out = tmp_path / "out"
    code, err = run_cli(["segment", path, "-o", out, "--model", tiny_model_dir, "--device", "cpu"], capsys)
    assert code == 2  # no input was segmented (1 is for a batch where only some failed)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert str(path) in lines[0] and problem in lines[0]
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_existing_output_is_refused_then_overwritten_on_request(tmp_path, capsys, tiny_model_dir):
    img = write(synthetic_flair(), tmp_path / "flair.nii.gz")
    out = tmp_path / "out"
    args = ["segment", img, "-o", out, "--model", tiny_model_dir, "--device", "cpu", "-q"]
    assert run_cli(args, capsys)[0] == 0
    seg = out / "flair.seg.nrrd"
    seg.write_bytes(b"radiologist's edited segmentation")
    code, err = run_cli(args, capsys)
    assert code == 2 and "already exists" in err and str(seg) in err
    assert seg.read_bytes() == b"radiologist's edited segmentation"
    assert run_cli(args + ["--overwrite"], capsys)[0] == 0
    assert seg.read_bytes() != b"radiologist's edited segmentation"


def test_batch_goes_on_past_a_bad_file(tmp_path, capsys, tiny_model_dir):
    good = write(synthetic_flair(), tmp_path / "good.nii.gz")
    code, err = run_cli(["segment", tmp_path / "missing.nii.gz", good, "-o", tmp_path / "out",
                         "--model", tiny_model_dir, "--device", "cpu", "-q"], capsys)
    assert code == 1 and "missing.nii.gz: file not found" in err
    assert (tmp_path / "out" / "good.seg.nrrd").exists()


def test_absurd_spacing_warns_but_segments(tmp_path, capsys, tiny_model_dir, caplog):
    img = write(synthetic_flair(spacing=(0.9, 0.9, 40.0)), tmp_path / "thick.nii.gz")
    with caplog.at_level(logging.WARNING):
        code, _ = run_cli(["segment", img, "-o", tmp_path / "out", "--model", tiny_model_dir,
                           "--device", "cpu", "-q"], capsys)
    assert code == 0
    assert any("implausible voxel spacing" in r.getMessage() for r in caplog.records)


def test_cuda_requested_without_cuda_is_a_clear_error(tmp_path, capsys, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    img = write(synthetic_flair(), tmp_path / "flair.nii.gz")
    code, err = run_cli(["segment", img, "-o", tmp_path / "out", "--model", tiny_model_dir,
                         "--device", "cuda"], capsys)
    assert code == 2 and "CUDA" in err and "Traceback" not in err


@pytest.mark.parametrize("version, problem", [("next", "must be one of 1, 2, 3"), ("2.5", "whole number")])
def test_unknown_synthesis_version_is_refused_from_the_generators_own_list(tmp_path, capsys, version, problem):
    from deepwml.synthesis.generator import VERSIONS

    if version == "next":  # the version after the newest: the list is the generator's, not a copy
        version = str(max(VERSIONS) + 1)
        problem = f"must be one of {', '.join(map(str, sorted(VERSIONS)))}, not '{version}'"
    with pytest.raises(SystemExit) as stop:
        main(["synth", str(tmp_path / "set"), "--cases", "1", "--synthesis-version", version])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and problem in err
    assert not (tmp_path / "set").exists()
