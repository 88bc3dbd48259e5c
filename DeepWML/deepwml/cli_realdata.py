"""``deepwml realdata`` and ``deepwml sanity``: the real-scan instruments on the command line.

Kept beside :mod:`deepwml.cli` (which registers them) so the main parser stays readable.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import argtype, check_count, check_non_negative, check_positive, thin_slab_kwargs

THIN_SLAB_HELP = ("segment thin-slice (< 2 mm, e.g. 3D 1 mm) volumes as axial slabs of this thickness, "
                  "probabilities interpolated back to every slice; 0 = every native slice "
                  "(default: %(default)s)")


def add_thin_slab_option(parser: argparse.ArgumentParser) -> None:
    """``--thin-slab-mm`` with the engine's default, ``--sliding-slab-mm`` and ``--thin-model``
    (one definition for every command; all say how thin-slice volumes are segmented; read them
    with :func:`thin_slab_args` and :func:`thin_model_arg`)."""
    from .defaults import THIN_SLAB_MM

    parser.add_argument("--thin-slab-mm", type=argtype(check_non_negative, "--thin-slab-mm"),
                        default=THIN_SLAB_MM, help=THIN_SLAB_HELP)
    parser.add_argument("--sliding-slab-mm", type=argtype(check_non_negative, "--sliding-slab-mm"), default=0.0,
                        metavar="MM", help="instead, see every slice of a thin-slice volume through the slab of this "
                                           "thickness centred on it (nothing interpolated back; opt-in, see the "
                                           "README's 'Sliding slabs'); 0 = off (default)")
    parser.add_argument("--thin-model", default="auto", metavar="DIR",
                        help="lesion model for volumes the network sees at slices thinner than 2 mm: auto (default: "
                             "the bundled thin-slice model when --model is the bundled model, else none), bundled, "
                             "a model folder, or none (every volume to --model)")


def thin_slab_args(args: argparse.Namespace) -> dict[str, float | bool]:
    """The Segmenter's ``thin_slab_mm`` and ``thin_slab_sliding`` for parsed options
    (:func:`deepwml.options.thin_slab_kwargs`)."""
    return thin_slab_kwargs(args.thin_slab_mm, args.sliding_slab_mm)


def thin_model_arg(args: argparse.Namespace) -> str | None:
    """The Segmenter's ``thin_model`` for parsed options: "auto", "bundled", a folder, or None."""
    return None if args.thin_model == "none" else args.thin_model


def add_brain_mask_options(parser: argparse.ArgumentParser) -> None:
    """``--no-brain-mask``, ``--brain-model``, ``--brain-margin-mm``, ``--no-white-matter``,
    ``--white-matter-model``, ``--no-mesial-temporal``, ``--mesial-temporal-model`` and ``--contrast-floor`` (read in
    the brain mask; one definition for segment, cohort, evaluate and sanity); :func:`brain_model_arg`,
    :func:`white_matter_model_arg`, :func:`mesial_temporal_model_arg` and :func:`contrast_floor_arg` turn them into the
    Segmenter's arguments."""
    from .defaults import DEFAULT_MARGIN_MM

    parser.add_argument("--no-brain-mask", action="store_true",
                        help="keep lesion probabilities outside the brain (by default they are set to 0 farther "
                             "than --brain-margin-mm outside the bundled brain-mask network's brain)")
    parser.add_argument("--brain-model", default=None, metavar="DIR",
                        help="brain-mask model folder or model.json (default: bundled)")
    parser.add_argument("--brain-margin-mm", type=argtype(check_non_negative, "--brain-margin-mm"),
                        default=DEFAULT_MARGIN_MM,
                        help="lesion probability is kept up to this far outside the brain mask (default: %(default)s)")
    parser.add_argument("--no-white-matter", action="store_true",
                        help="keep marks wherever they lie in the brain (by default a marked component of at most 1 ml "
                             "with less than half of it within 4 mm of the bundled white-matter network's white matter "
                             "is removed)")
    parser.add_argument("--white-matter-model", default=None, metavar="DIR",
                        help="white-matter model folder or model.json (default: bundled)")
    parser.add_argument("--no-mesial-temporal", action="store_true",
                        help="no hippocampus/amygdala exclusion even with --mesial-temporal-model")
    parser.add_argument("--mesial-temporal-model", default=None, metavar="DIR",
                        help="with the white-matter restriction, also remove every marked component of at most 1 ml "
                             "lying at least half on this mesial-temporal model's hippocampus and amygdala (opt-in: "
                             "none is bundled, experiment 49's network failed its rule; docs/EXPERIMENTS.md)")
    parser.add_argument("--contrast-floor", type=argtype(check_non_negative, "--contrast-floor"), default=None,
                        metavar="K", help="remove marked voxels darker than K x the scan's white-matter level, read "
                                          "in the brain mask (default: the model card's floor, if it names one; "
                                          "0: none)")


def contrast_floor_arg(args: argparse.Namespace) -> Any:
    """The Segmenter's ``contrast_floor`` for parsed options: "card", None (``0``) or a ContrastFloor."""
    from .contrast_floor import floor_setting

    return floor_setting(args.contrast_floor)


def white_matter_model_arg(args: argparse.Namespace) -> str | None:
    """The Segmenter's ``white_matter_model`` for parsed options: None (off), a folder, or the default."""
    from .defaults import DEFAULT_WHITE_MATTER_MODEL

    if args.no_white_matter:
        return None
    return args.white_matter_model or DEFAULT_WHITE_MATTER_MODEL


def mesial_temporal_model_arg(args: argparse.Namespace) -> str | None:
    """The Segmenter's ``mesial_temporal_model`` for parsed options: None (off), a folder, or the default."""
    from .defaults import DEFAULT_MESIAL_TEMPORAL_MODEL

    if args.no_mesial_temporal or args.no_white_matter:
        return None
    return args.mesial_temporal_model or DEFAULT_MESIAL_TEMPORAL_MODEL


def brain_model_arg(args: argparse.Namespace) -> str | None:
    """The Segmenter's ``brain_model`` for parsed options: None (off), a folder, or "bundled"."""
    if args.no_brain_mask:
        return None
    return args.brain_model or "bundled"


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """``--precision`` (one definition for segment, cohort, evaluate and sanity)."""
    from .defaults import PRECISIONS

    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto = float32 on every device; bf16/fp16: PyTorch autocast; int8: the model's "
                             "quantised graph in ONNX Runtime on the CPU (faster network, worse masks: for a quick "
                             "look; a volume beyond its input range runs float32; 'deepwml export-onnx --int8' "
                             "makes it)")


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    """``--tta`` / ``--no-tta`` (one definition for segment, cohort, evaluate and sanity); unset:
    :func:`deepwml.defaults.default_flip_tta` (on, except with --precision int8)."""
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="average with the left-right flipped slice (default: on, except with --precision int8, "
                             "the fast mode; --no-tta: one pass, twice as fast)")


def add_segmentation_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how volumes are segmented, shared by ``segment`` and ``cohort`` so
    they cannot drift apart (one definition, one meaning)."""
    from .options import check_positive_int, check_threshold

    parser.add_argument("--model", default=None, help="model folder or model.json, or 'bundled' (the default)")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda (default auto; for a cohort, on every worker)")
    parser.add_argument("--threshold", type=argtype(check_threshold, "--threshold"), default=None,
                        help="probability threshold, strictly between 0 and 1 (default: the model card's)")
    add_precision_option(parser)
    parser.add_argument("--batch-size", type=argtype(check_positive_int, "--batch-size"), default=8)
    add_tta_option(parser)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"],
                        help="auto: ONNX Runtime for float32 on the CPU when the model has an ONNX export, "
                             "else PyTorch")
    parser.add_argument("--whole-canvas", action="store_true",
                        help="run the network on the whole 256x256 canvas of every slice, not just the head's "
                             "window (slower; for checking)")
    parser.add_argument("--probabilities", action="store_true", help="also write the probability map")
    parser.add_argument("--labelmap", action="store_true",
                        help="also write a binary NIfTI labelmap (a cohort with --bids always writes it: the "
                             "BIDS mask)")
    parser.add_argument("--series", action="append", metavar="UID",
                        help="DICOM series to segment in a folder holding several (repeatable; by default "
                             "the one series whose description says FLAIR)")
    add_thin_slab_option(parser)
    add_brain_mask_options(parser)


def cmd_realdata(args: argparse.Namespace) -> int:
    from .evaluation.realdata import write_real_manifests

    manifests = write_real_manifests(args.dataset, Path(args.output),
                                     Path(args.data) if args.data else None, tuple(args.reslice),
                                     overwrite=args.overwrite, progress=not args.quiet)
    for manifest in manifests:
        print(f"manifest: {manifest}")
    print(f"evaluate with: deepwml evaluate {manifests[0]} -o REPORT_DIR")
    return 0


def cmd_sanity(args: argparse.Namespace) -> int:
    from .evaluation.sanity import sanity_report

    report = sanity_report(args.scans, Path(args.output), model=args.model, device=args.device,
                           precision=args.precision, **thin_slab_args(args),
                           thin_model=thin_model_arg(args),
                           brain_model=brain_model_arg(args), brain_margin_mm=args.brain_margin_mm,
                           contrast_floor=contrast_floor_arg(args), white_matter_model=white_matter_model_arg(args),
                           mesial_temporal_model=mesial_temporal_model_arg(args), tolerance_mm=args.tolerance_mm, step=args.every, tta=args.tta,
                           overwrite=args.overwrite, progress=not args.quiet)
    print(f"sanity report: {report}")
    return 0


def add_realdata_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``realdata`` and ``sanity`` on the main parser's subcommands."""
    from .defaults import OUTSIDE_TOLERANCE_MM

    rd = sub.add_parser("realdata", parents=[common],
                        help="write evaluate manifests for a real labelled set (native and resliced to thick "
                             "axial slabs); evaluation only, never training")
    rd.add_argument("dataset", choices=["lesjak2017"], help="real labelled set in the shared data folder")
    rd.add_argument("-o", "--output", required=True, help="output folder (outside the data folder)")
    rd.add_argument("--data", default=None,
                    help="shared data folder (default: $DEEPWML_SHARED_DATA or ../shared/data beside the repo)")
    rd.add_argument("--reslice", nargs="*", type=argtype(check_positive, "--reslice"), default=[3.0, 5.0],
                    metavar="MM", help="slab thicknesses in mm for thick 2D versions (default: 3 5)")
    rd.add_argument("--overwrite", action="store_true")
    rd.set_defaults(func=cmd_realdata)

    sa = sub.add_parser("sanity", parents=[common],
                        help="whole-head plausibility report for unlabelled scans: volume, lesion count, "
                             "volume outside the brain, contact sheets")
    sa.add_argument("scans", nargs="+", help="FLAIR volume files or DICOM series folders")
    sa.add_argument("-o", "--output", required=True, help="output folder")
    sa.add_argument("--model", default=None, help="model folder or model.json, or 'bundled' (the default)")
    sa.add_argument("--device", default="auto")
    add_precision_option(sa)
    add_tta_option(sa)
    sa.add_argument("--tolerance-mm", type=argtype(check_non_negative, "--tolerance-mm"),
                    default=OUTSIDE_TOLERANCE_MM,
                    help="lesion farther than this from the brain mask counts as outside (default: %(default)s)")
    sa.add_argument("--every", type=argtype(check_count, "--every"), default=0,
                    help="show every k-th slice in the contact sheets (0: about 24 slices per scan)")
    add_thin_slab_option(sa)
    add_brain_mask_options(sa)
    sa.add_argument("--overwrite", action="store_true")
    sa.set_defaults(func=cmd_sanity)
