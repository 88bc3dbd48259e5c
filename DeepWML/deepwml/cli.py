"""``deepwml`` command line: segment, phantom, train, choose-threshold, consensus, evaluate.

Errors a user can act on print one line (``deepwml: error: FILE: problem``) and exit 2;
a batch goes on past a bad file and exits 1 at the end if some inputs failed and others were
done, 2 if none was (so a single bad input exits 2, like any command that could not run).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

from . import __version__
from .cli_cohort import add_cohort_command
from .cli_realdata import (add_brain_mask_options, add_precision_option, add_realdata_commands,
                           add_segmentation_options, add_thin_slab_option, add_tta_option, brain_model_arg,
                           contrast_floor_arg, mesial_temporal_model_arg, thin_model_arg, thin_slab_args,
                           white_matter_model_arg)
from .errors import DeepWMLError
from .options import (argtype, check_count, check_crop, check_fraction, check_non_negative, check_positive,
                      check_positive_int, check_synthesis_version)

if TYPE_CHECKING:
    from .read_ahead import ReadAhead
    from .training.threshold_choice import ThresholdChoice

log = logging.getLogger("deepwml")


def _flatten(summary: dict[str, Any]) -> dict[str, Any]:
    """One CSV row per case: scalars only, timings prefixed, caution codes joined."""
    from .known_limits import caution_codes
    from .pipeline import int8_fallback_share

    row = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    row.update({f"time_{k}_s": v for k, v in summary.get("timings_s", {}).items()})
    row["model_id"] = summary.get("model", {}).get("id")
    row["cautions"] = caution_codes(summary)
    row["int8_fallback"] = int8_fallback_share(summary)
    return row


def _write_batch_summary(path: Path, summaries: list[dict[str, Any]], overwrite: bool) -> None:
    from .output_files import refuse_existing, write_csv, write_with

    refuse_existing(path, overwrite)
    if path.suffix.lower() == ".csv":
        write_csv(path, [_flatten(s) for s in summaries])
    else:
        write_with(path, lambda tmp: tmp.write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8"))


def cmd_segment(args: argparse.Namespace) -> int:
    # one input: read it while the model loads (the cold start, issue 14)
    from .read_ahead import ReadAhead

    read_ahead = ReadAhead(args.inputs[0], args.series or ()) if len(args.inputs) == 1 else None
    try:
        return _segment_planned(args, read_ahead)
    finally:
        if read_ahead is not None:
            read_ahead.finish()


def _segment_planned(args: argparse.Namespace, read_ahead: "ReadAhead | None") -> int:
    """``segment`` after its one input (if one) began reading: model, output folder, the loop."""
    from .output_folder import output_lock, prepare_output_folder, refuse_clash, unique_case_names
    from .output_files import refuse_existing
    from .pipeline import OutputPaths, case_name
    from .segmenter import Segmenter

    names = unique_case_names(args.inputs, [case_name(Path(p)) for p in args.inputs])
    if args.summary:
        planned = [path for name in names for path in
                   OutputPaths.for_case(Path(args.output), name, args.labelmap, args.probabilities).all()]
        refuse_clash(Path(args.summary), planned, "--summary file")
        refuse_existing(Path(args.summary), args.overwrite)
    try:
        segmenter = Segmenter(args.model, device=args.device, precision=args.precision,
                              batch_size=args.batch_size, flip_tta=args.tta, head_crop=not args.whole_canvas,
                              backend=args.backend, **thin_slab_args(args),
                              brain_model=brain_model_arg(args), brain_margin_mm=args.brain_margin_mm,
                              thin_model=thin_model_arg(args), contrast_floor=contrast_floor_arg(args),
                              white_matter_model=white_matter_model_arg(args),
                              mesial_temporal_model=mesial_temporal_model_arg(args))
    except RuntimeError as err:
        raise DeepWMLError(None, str(err)) from None
    prepare_output_folder(args.output)
    with output_lock(args.output, "deepwml segment"):
        return _segment_all(args, segmenter, names, read_ahead)


class _NoBar:
    """The progress bar of a one-volume ``segment``: nothing to show."""

    def update(self, _n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _segment_all(args: argparse.Namespace, segmenter: Any, names: list[str],
                 read_ahead: "ReadAhead | None" = None) -> int:
    """The batch loop of ``segment`` (inside the output folder's lock). Several inputs go
    through :func:`deepwml.batch.segment_files` (reading, network and writing overlapped);
    one input through :func:`deepwml.pipeline.segment_file`."""
    summaries: list[dict[str, Any]] = []
    failures = 0
    if len(args.inputs) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(args.inputs), desc="segment", unit="volume", disable=args.quiet)
        write = tqdm.write
    else:  # no bar for one volume, and no tqdm import (~25 ms of a timed cold start)
        bar, write = _NoBar(), print

    def report(_index: int, path: str, summary: dict[str, Any] | None, error: DeepWMLError | None) -> None:
        nonlocal failures
        bar.update(1)
        if error is not None:
            failures += 1
            print(f"deepwml: error: {error}", file=sys.stderr)
            return
        summaries.append(summary)
        if not args.quiet:
            write(f"{path}: {summary['total_volume_ml']:.2f} ml in {summary['lesion_count']} "
                       f"lesions, {summary['timings_s']['end_to_end']:.2f} s on {summary['device']} "
                       f"-> {summary['segmentation']}")
            for caution in summary["cautions"]:
                write(f"  caution: {caution['text']}")

    options = dict(threshold=args.threshold, labelmap=args.labelmap, probabilities=args.probabilities,
                   overwrite=args.overwrite, series=args.series or ())
    if len(args.inputs) > 1:
        from .batch import segment_files

        segment_files(args.inputs, args.output, segmenter, report, names=names, **options)
    else:
        from .pipeline import segment_file

        try:
            report(0, args.inputs[0], segment_file(args.inputs[0], args.output, segmenter,
                                                   name=names[0], read_ahead=read_ahead, **options), None)
        except DeepWMLError as err:
            report(0, args.inputs[0], None, err)
    bar.close()
    if args.summary and summaries:
        _write_batch_summary(Path(args.summary), summaries, args.overwrite)
        if not args.quiet:
            print(f"summary of {len(summaries)} volume(s): {args.summary}")
    if failures and not summaries:
        return 2  # no input was segmented: the command could not do its job
    return 1 if failures else 0


def cmd_phantom(args: argparse.Namespace) -> int:
    from .phantom.generator import generate_dataset

    manifest = generate_dataset(Path(args.output), args.cases, args.seed, overwrite=args.overwrite,
                                progress=not args.quiet, workers=args.workers)
    print(f"phantom set of {args.cases} case(s): {manifest}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from .synthesis.acquisition import WHOLE_HEAD_3D
    from .synthesis.generator import generate_dataset

    manifest = generate_dataset(Path(args.output), args.cases, args.seed, overwrite=args.overwrite,
                                progress=not args.quiet, start=args.start, version=args.synthesis_version,
                                acquisition=WHOLE_HEAD_3D if args.whole_head_3d else None, workers=args.workers)
    print(f"synthetic set of {args.cases} case(s): {manifest}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training.trainer import TrainConfig, train

    config = TrainConfig(epochs=args.epochs, base_channels=args.base_channels, lr=args.lr,
                         batch_size=args.batch_size, seed=args.seed, device=args.device,
                         split_level=args.split_level, augment_intensity=args.augment_intensity,
                         crop=args.crop, max_steps_per_epoch=args.steps_per_epoch,
                         val_slices=args.val_slices, name=args.name, version=args.model_version,
                         notes=args.notes, init=args.init, precision=args.precision, task=args.task,
                         input_pool=args.input_pool, workers=args.workers, max_minutes=args.max_minutes)
    model_dir = train(Path(args.manifest), Path(args.output), config, resume=not args.restart,
                      progress=not args.quiet)
    print(f"model: {model_dir}")
    if args.choose_threshold:
        _print_choice(_choose(model_dir, Path(args.manifest), Path(args.output) / "split.json", "val", "card",
                              args.quiet, record=True))
    inherited = _inherited_reading_line(model_dir)
    if inherited:
        print(inherited)
    return 0


def cmd_choose_threshold(args: argparse.Namespace) -> int:
    parent = {"card": "card", "none": None}.get(args.parent, args.parent)
    choice = _choose(Path(args.model), Path(args.manifest), args.split, args.part, parent, args.quiet, args.record)
    _print_choice(choice)
    return 0 if choice.chosen is not None else 1


def _choose(model_dir: Path, manifest: Path, split: Path | str, part: str, parent: str | None, quiet: bool,
            record: bool) -> "ThresholdChoice":
    """Choose the threshold by deepwml.training.threshold_choice's rule (one call for both commands)."""
    from .training.threshold_choice import choose_threshold

    if str(split) != "-" and not Path(split).exists():
        raise DeepWMLError(Path(split), "split not found (a training run writes RUN/split.json; '-' for every case)")
    return choose_threshold(model_dir, manifest, split, part, parent, record=record, progress=not quiet)


def _print_choice(choice: "ThresholdChoice") -> None:
    print(f"threshold sweep on {choice.cases_with_lesions} validation case(s) with lesions and "
          f"{choice.lesion_free_cases} lesion-free:")
    for line in choice.lines():
        print(f"  {line}" if line.startswith("threshold ") else line)
    if choice.recorded:
        print(f"threshold {choice.chosen:g} recorded in the model card")


def _inherited_reading_line(model_dir: Path) -> str | None:
    """One line saying what a fine-tune reads its output with: its parent's threshold and floor, or its own threshold
    (chosen on its validation cases) and its parent's floor; None for a model from random weights. So the user sees at
    once which threshold and floor the new model will be used with."""
    from .evaluation.mark_contrast import DEFAULT_LEVEL
    from .model_files import read_card

    card = read_card(model_dir)[0]
    parent = card.get("metrics", {}).get("threshold_selection", {}).get("inherited_from")
    floor = card.get("contrast_floor")
    what = f"contrast floor {floor['factor']:g}x ({floor.get('level', DEFAULT_LEVEL)})" if floor else "no contrast floor"
    if parent:
        return f"reads its output as {parent} does: threshold {card['threshold']:g}, {what}"
    if floor and floor.get("inherited_from"):
        return (f"reads its output with its own threshold {card['threshold']:g} (chosen on its validation cases) and "
                f"{floor['inherited_from']}'s {what}")
    return None


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .model_files import load_model
    from .onnx_backend import export_onnx

    model = load_model(args.model)
    if not args.int8:
        print(f"ONNX export: {export_onnx(model)}")
        return 0
    from .onnx_int8 import calibration_canvases, calibration_files, quantize_int8

    if not args.calibration:
        raise DeepWMLError(Path(args.model), "an int8 graph needs calibration FLAIRs: --calibration FILE|FOLDER|"
                                             "MANIFEST.csv (training data, never evaluation scans)")
    files = calibration_files(args.calibration)
    canvases = calibration_canvases(files, args.calibration_slices)
    description = args.calibration_note or f"{len(files)} FLAIRs from {', '.join(map(str, args.calibration))}"
    print(f"int8 ONNX export: {quantize_int8(model, canvases, description)}")
    return 0


def cmd_consensus(args: argparse.Namespace) -> int:
    from .evaluation.consensus import run_consensus

    report = run_consensus(Path(args.manifest), Path(args.output), threshold=args.min_dice,
                           method=args.method, overwrite=args.overwrite)
    print(f"consensus report: {report}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.report import evaluate

    report = evaluate(Path(args.manifest), Path(args.output), model=args.model, device=args.device,
                      precision=args.precision, split=args.split, overwrite=args.overwrite, progress=not args.quiet,
                      max_cases=args.max_cases, record_in_card=args.record_in_card,
                      **thin_slab_args(args), brain_model=brain_model_arg(args),
                      brain_margin_mm=args.brain_margin_mm, tta=args.tta, thin_model=thin_model_arg(args),
                      contrast_floor=contrast_floor_arg(args), white_matter_model=white_matter_model_arg(args),
                      mesial_temporal_model=mesial_temporal_model_arg(args))
    print(f"evaluation report: {report}")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of this command (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="deepwml", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepwml {__version__}")
    common = OneLineParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", parents=[common], help="segment FLAIR volumes (NIfTI, NRRD, MHA, DICOM folder)")
    seg.add_argument("inputs", nargs="+", help="FLAIR volume files or DICOM series folders")
    seg.add_argument("-o", "--output", required=True, help="output folder")
    add_segmentation_options(seg)
    seg.add_argument("--summary", default=None, help="one summary of all inputs (.json or .csv)")
    seg.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    seg.set_defaults(func=cmd_segment)

    add_cohort_command(sub, common)

    ph = sub.add_parser("phantom", parents=[common], help="generate multi-center FLAIR phantoms with two raters")
    ph.add_argument("output", help="output folder")
    ph.add_argument("--cases", type=argtype(check_positive_int, "--cases"), default=18)
    ph.add_argument("--seed", type=argtype(check_count, "--seed"), default=0)
    ph.add_argument("--workers", type=argtype(check_count, "--workers"), default=0,
                    help="processes (default 0: one per core); the cases are the same whatever the number")
    ph.add_argument("--overwrite", action="store_true")
    ph.set_defaults(func=cmd_phantom)

    sy = sub.add_parser("synth", parents=[common],
                        help="synthesise whole-head FLAIR training cases from real anatomy (SynthSeg label "
                             "maps + real MS lesion masks in ../shared/data)")
    sy.add_argument("output", help="output folder")
    sy.add_argument("--cases", type=argtype(check_positive_int, "--cases"), default=200)
    sy.add_argument("--seed", type=argtype(check_count, "--seed"), default=0)
    sy.add_argument("--start", type=argtype(check_count, "--start"), default=0,
                    help="index of the first case (to extend a set)")
    sy.add_argument("--synthesis-version", type=argtype(check_synthesis_version, "--synthesis-version"), default=3,
                    help="1: the data of model 1.0.0; 2: fainter lesions, confluent WMH (model 1.1.0); "
                         "3 (default): 2 + skull-stripped cases, confluent growth of plausible loads only, the "
                         "label maps' own lesion labels as white matter (model 1.2.0); 4: 3 with lesion contrast "
                         "spread down to faint, as bright as cortex or less (the heads of the shipped 1.5.0 and of "
                         "1.4.0, trained with the phantoms weighted up); experimental: 5: 4 with grey matter kept "
                         "below the lesions; 6: 4 with the real MS masks of one to three patients united per case "
                         "(heavier loads of real shape); 7: 6 with lesions fainter at their rim than in their core; "
                         "8: 7 with faint, diffuse, unlabelled white-matter brightening in most cases; 9: 7 with only the "
                         "visibly brighter lesion voxels labelled; 10: 7 with every real mask moved by a random rigid motion "
                         "(lesion places decorrelated from anatomy); 11: 7 with the corticospinal tracts and peritrigonal white "
                         "matter faintly brighter on both sides, unlabelled (normal FLAIR)")
    sy.add_argument("--whole-head-3d", action="store_true",
                    help="every case a whole-head 3D FLAIR (150 axial 1 mm slices, 256x256 at 0.94 mm) instead "
                         "of a protocol drawn per case (whose thin stacks cover 24-40 mm only)")
    sy.add_argument("--workers", type=argtype(check_count, "--workers"), default=0,
                    help="processes (default 0: one per core); the cases are the same whatever the number")
    sy.add_argument("--overwrite", action="store_true")
    sy.set_defaults(func=cmd_synth)

    tr = sub.add_parser("train", parents=[common], help="train a model from a manifest (or MICCAI WMH 2017 folder)")
    tr.add_argument("manifest", help="manifest.csv or a MICCAI WMH 2017 folder")
    tr.add_argument("-o", "--output", required=True, help="model/run folder (resumed if present)")
    tr.add_argument("--epochs", type=argtype(check_positive_int, "--epochs"), default=200)
    tr.add_argument("--base-channels", type=argtype(check_positive_int, "--base-channels"), default=64,
                    help="U-Net width (paper: 64)")
    tr.add_argument("--lr", type=argtype(check_positive, "--lr"), default=1e-4)
    tr.add_argument("--batch-size", type=argtype(check_positive_int, "--batch-size"), default=8)
    tr.add_argument("--seed", type=argtype(check_count, "--seed"), default=0)
    tr.add_argument("--device", default="auto")
    tr.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"],
                    help="autocast inside training: auto = bf16 on CUDA, float32 on the CPU; bf16 is "
                         "~2.7x faster on CPUs with native bf16 (AVX512-BF16/AMX), far slower on others")
    tr.add_argument("--split-level", default="patient", choices=["patient", "image"],
                    help="patient (default, no leakage) or image (the paper's, leaks neighbours)")
    tr.add_argument("--augment-intensity", action="store_true",
                    help="add gamma/contrast/blur augmentation to flip+rotation")
    tr.add_argument("--crop", type=argtype(check_crop, "--crop"), default=0,
                    help="train on random crops of this size, a multiple of 16 (0: full)")
    tr.add_argument("--steps-per-epoch", type=argtype(check_count, "--steps-per-epoch"), default=0,
                    help="cap batches per epoch (0: all)")
    tr.add_argument("--val-slices", type=argtype(check_count, "--val-slices"), default=0,
                    help="validate on at most this many evenly spaced slices (0: all)")
    tr.add_argument("--name", default="deepwml")
    tr.add_argument("--model-version", default="0.1.0")
    tr.add_argument("--notes", default="", help="free text for the model card (training data!)")
    tr.add_argument("--task", default="lesion", choices=["lesion", "brain", "white-matter", "mesial-temporal"],
                    help="lesion (default): the labels are WMH; brain: the labels are brain masks, for a "
                         "brain-mask model (--brain-model of segment); white-matter: the labels are white matter "
                         "with its lesions, for a white-matter model (--white-matter-model of segment); "
                         "mesial-temporal: the labels are the hippocampus and amygdala, for a mesial-temporal model "
                         "(--mesial-temporal-model of segment)")
    tr.add_argument("--input-pool", type=argtype(check_positive_int, "--input-pool"), default=1,
                    help="run the network on the canvas averaged over NxN blocks, logits repeated back (1: full "
                         "resolution; the bundled brain-mask model uses 2)")
    tr.add_argument("--workers", type=argtype(check_count, "--workers"), default=0,
                    help="processes that read and preprocess the cases (default 0: one per core)")
    tr.add_argument("--max-minutes", type=argtype(check_non_negative, "--max-minutes"), default=0.0,
                    help="stop after the first epoch that ends past this many minutes of training (default 0: "
                         "no limit; the best checkpoint so far is the model), e.g. to fit a GPU lease")
    tr.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    tr.add_argument("--init", default="", metavar="MODEL_DIR",
                    help="fine-tune: start from this model's weights ('bundled' = the shipped model); "
                         "its width replaces --base-channels, and the new model reads its output with that "
                         "model's threshold and contrast floor (its card says so)")
    tr.add_argument("--choose-threshold", action="store_true",
                    help="after training, choose the model's threshold on its own validation cases (at least 10 with "
                         "lesions; a fine-tune bounded by the model it started from) and record it in its card: "
                         "'deepwml choose-threshold' with the run's split")
    tr.set_defaults(func=cmd_train)

    ct = sub.add_parser("choose-threshold", parents=[common],
                        help="choose a lesion model's threshold on its own validation cases (never on evaluation "
                             "scans): the highest median per-volume Dice, bounded for a fine-tune by its parent")
    ct.add_argument("model", help="model folder or model.json (a training run's RUN/model)")
    ct.add_argument("manifest", help="the training manifest (or MICCAI WMH 2017 folder) of the run")
    ct.add_argument("--split", default="-", help="the run's split.json (its 'val' cases are used; default '-': every "
                                                 "case of the manifest, a validation set of its own)")
    ct.add_argument("--part", default="val", choices=["val", "train", "test"],
                    help="which cases of --split (default: val; the test cases stay for measuring the result)")
    ct.add_argument("--parent", default="card", metavar="DIR|card|none",
                    help="the model it was fine-tuned from, which bounds the choice: 'card' (default) the one its card "
                         "names, a model folder, or 'none'")
    ct.add_argument("--record", action="store_true", help="write the chosen threshold and its figures into the card")
    ct.set_defaults(func=cmd_choose_threshold)

    ex = sub.add_parser("export-onnx", parents=[common],
                        help="write model.onnx beside a model's weights (fast CPU inference)")
    ex.add_argument("model", help="model folder or model.json")
    ex.add_argument("--int8", action="store_true",
                    help="also write model.int8.onnx, the quantised graph of --precision int8 (needs --calibration)")
    ex.add_argument("--calibration", nargs="+", metavar="FLAIR", default=[],
                    help="FLAIR files, folders or training manifests (.csv) whose canvases set the int8 "
                         "activation ranges; training data, never evaluation scans")
    ex.add_argument("--calibration-slices", type=argtype(check_positive_int, "--calibration-slices"), default=96,
                    help="canvas slices used for calibration, spread over the files (default: %(default)s)")
    ex.add_argument("--calibration-note", default="", help="how the calibration data are described in the card")
    ex.set_defaults(func=cmd_export_onnx)

    co = sub.add_parser("consensus", parents=[common], help="inter-rater Dice check and consensus labels")
    co.add_argument("manifest")
    co.add_argument("-o", "--output", required=True)
    co.add_argument("--min-dice", type=argtype(check_fraction, "--min-dice"), default=0.85)
    co.add_argument("--method", default="staple", choices=["staple", "intersection", "union"])
    co.add_argument("--overwrite", action="store_true")
    co.set_defaults(func=cmd_consensus)

    ev = sub.add_parser("evaluate", parents=[common], help="the paper's evaluation, statistics and an HTML report")
    ev.add_argument("manifest")
    ev.add_argument("-o", "--output", required=True)
    ev.add_argument("--model", default=None, help="model folder or model.json, or 'bundled' (the default)")
    ev.add_argument("--device", default="auto")
    add_precision_option(ev)
    ev.add_argument("--split", default="auto",
                    help="auto (test split if the model was trained on this manifest, else all) | "
                         "test | val | train | all | a split.json")
    ev.add_argument("--max-cases", type=argtype(check_count, "--max-cases"), default=0)
    ev.add_argument("--record-in-card", action="store_true",
                    help="write the results into the model card (metrics.evaluation)")
    add_tta_option(ev)
    ev.add_argument("--overwrite", action="store_true")
    add_thin_slab_option(ev)
    add_brain_mask_options(ev)
    ev.set_defaults(func=cmd_evaluate)
    add_realdata_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="deepwml: %(levelname)s: %(message)s")
    previous = _stop_cleanly_on_sigterm()
    try:
        return int(args.func(args) or 0)
    except DeepWMLError as err:
        print(f"deepwml: error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print("deepwml: terminated; unfinished outputs were removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("deepwml: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def console() -> NoReturn:
    """The ``deepwml`` command: :func:`main`, then, after ``segment``, exit without the
    interpreter's teardown.

    Why: freeing every module and the ONNX Runtime session took 0.06-0.08 s of a ~1 s one-volume
    cold start on the 2-core CPU and does nothing for the user: by then every output has been
    written atomically and closed, and the pipeline's threads have been joined. Other commands
    (cohorts on Dask, training) may have exit handlers to run, so they exit normally.
    """
    code = main()
    if sys.argv[1:2] == ["segment"]:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised like Ctrl-C so that every ``finally`` removes its temporary files
    (the default SIGTERM action kills the process and leaves hidden temporaries behind)."""


def _stop_cleanly_on_sigterm() -> Any:
    """Turn SIGTERM into :class:`Terminated`; return the previous handler (None if not set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()
    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    console()
