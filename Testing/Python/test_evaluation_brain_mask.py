"""The sanity check's reference brain mask (MNI template registration) reads the same twice.

Why: before the registration ran on one thread, the same scan gave brain masks 2 ml apart from one
run to the next, so the "ml outside the brain" figure moved in its third decimal between runs of
``benchmarks/real_scans.sh`` (README "Accuracy on real scans"). An instrument must be reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from deepwml.evaluation import brain_mask as template_mask

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
WHOLE_HEAD_2D = DATA / "lesjak2016-ms-longitudinal-raw" / "patient20" / "study2_FLAIR.nii.gz"


@pytest.mark.skipif(not WHOLE_HEAD_2D.is_file(), reason=f"{WHOLE_HEAD_2D} is absent (CI provides ../shared/data)")
def test_template_registration_is_reproducible_and_leaves_itk_threads_alone():
    flair = sitk.ReadImage(str(WHOLE_HEAD_2D))
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    first = template_mask.register_template(flair)
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads
    second = template_mask.register_template(flair)
    assert first.GetParameters() == second.GetParameters()
    assert first.GetFixedParameters() == second.GetFixedParameters()
    # and the result is a brain, not a reproducible failure: an adult brain is 1.0-1.8 l
    mask = template_mask.brain_mask(flair)
    brain_ml = float(sitk.GetArrayViewFromImage(mask).sum()) * float(np.prod(flair.GetSpacing())) / 1000.0
    assert 1000.0 < brain_ml < 1800.0
