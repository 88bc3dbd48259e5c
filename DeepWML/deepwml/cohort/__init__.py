"""Cohorts: many FLAIR volumes segmented on a Dask cluster, resumable, one results table.

Why Dask distributed (not Ray, not a scheduler of our own): its wheels are pure Python, so it
installs wherever the engine does (Slicer's embedded Python included); a local cluster runs
in-process with no daemon; ``tcp://host:port`` reaches a real cluster (``dask-scheduler`` /
``dask-worker``, dask-jobqueue on SLURM/PBS) with the same code; and a task whose worker dies is
recomputed on another worker by the scheduler. Every case is independent (one file in, a few
files out), which is exactly Dask's ``submit`` / ``as_completed`` model.

Modules: :mod:`.inputs` finds the volumes (files, folders, list files, a BIDS dataset),
:mod:`.layout` names each case's outputs (flat or BIDS derivatives), :mod:`.resume` decides which
cases are already done, :mod:`.task` is what a worker runs, :mod:`.table` writes the results
table and :mod:`.runner` ties them together on a cluster.
"""

from .runner import CohortResult, CohortSettings, run_cohort

__all__ = ["CohortResult", "CohortSettings", "run_cohort"]
