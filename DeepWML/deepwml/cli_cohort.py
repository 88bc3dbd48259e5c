"""``deepwml cohort``: many volumes on a Dask cluster (local by default), resumable.

Kept beside :mod:`deepwml.cli` (which registers it) so the main parser stays readable; the
work is in :mod:`deepwml.cohort`.
"""

from __future__ import annotations

import argparse
import sys

from .cli_realdata import (add_segmentation_options, brain_model_arg, thin_model_arg, thin_slab_args,
                           mesial_temporal_model_arg, white_matter_model_arg)
from .options import argtype, check_positive_int


def cmd_cohort(args: argparse.Namespace) -> int:
    from .cohort import CohortSettings, run_cohort
    from .cohort.table import DONE_BEFORE, FAILED, OK

    slabs = thin_slab_args(args)
    settings = CohortSettings(args.model, args.device, args.precision, args.batch_size, args.tta,
                              not args.whole_canvas, args.backend, slabs["thin_slab_mm"], args.threshold,
                              args.labelmap, args.probabilities, tuple(args.series or ()),
                              brain_model_arg(args), args.brain_margin_mm, thin_model_arg(args),
                              slabs["thin_slab_sliding"], args.contrast_floor, white_matter_model_arg(args),
                              mesial_temporal_model_arg(args))
    result = run_cohort(args.inputs, args.output, settings, bids=args.bids, workers=args.workers,
                        threads=args.threads, scheduler=args.scheduler, overwrite=args.overwrite,
                        progress=not args.quiet)
    for row in result.rows:
        if row["status"] == FAILED:
            print(f"deepwml: error: {row['input']}: {row['error']}", file=sys.stderr)
    print(f"cohort of {len(result.rows)} input(s): {result.count(OK)} segmented, {result.count(DONE_BEFORE)} "
          f"done before, {result.count(FAILED)} failed; table: {result.csv}")
    return result.exit_code


def add_cohort_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``deepwml cohort`` (its segmentation options mean what ``segment``'s do)."""
    co = sub.add_parser("cohort", parents=[common],
                        help="segment a cohort on a Dask cluster (local by default): resumable, one results "
                             "table (cohort.csv + cohort.parquet), BIDS in and BIDS derivatives out")
    co.add_argument("inputs", nargs="+",
                    help="FLAIR files, folders (their image files; a folder without any is one DICOM series), "
                         "list files (.txt: one path a line; .csv: a 'flair' column), or with --bids one "
                         "BIDS dataset root")
    co.add_argument("-o", "--output", required=True,
                    help="output folder (for --bids, the derivatives go to OUTPUT/derivatives/deepwml); a "
                         "second run into it resumes")
    co.add_argument("--bids", action="store_true",
                    help="the input is a BIDS dataset: segment sub-*/[ses-*/]anat/*_FLAIR.nii[.gz] and write "
                         "a BIDS-derivatives dataset")
    co.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="address of a running Dask scheduler (tcp://host:8786); paths must be the same on "
                         "every worker. Default: a local cluster")
    co.add_argument("--workers", type=argtype(check_positive_int, "--workers"), default=None,
                    help="local cluster: worker processes (default: CPU cores / --threads)")
    co.add_argument("--threads", type=argtype(check_positive_int, "--threads"), default=1,
                    help="local cluster: threads per worker (default 1)")
    co.add_argument("--overwrite", action="store_true",
                    help="segment every input again (default: skip inputs whose verified summary exists)")
    add_segmentation_options(co)
    co.set_defaults(func=cmd_cohort)
