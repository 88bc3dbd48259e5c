"""Interpolate the weights of a model and its own fine-tune (WiSE-FT; see
``deepwml.training.weight_interpolation``) and export the result's ONNX graph.

    .venv/bin/python benchmarks/interpolate_weights.py BASE_DIR TUNED_DIR ALPHA OUT_DIR --model-version V
    .venv/bin/python benchmarks/interpolate_weights.py --soup TUNED_DIR TUNED_DIR [...] OUT_DIR --model-version V

Writes ``(1 - ALPHA) * BASE + ALPHA * TUNED`` as a model folder, or with ``--soup`` the uniform
average of fine-tunes of one model; the threshold is left to ``threshold_on_validation.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from deepwml.onnx_backend import export_after_training
from deepwml.training.weight_interpolation import interpolate_models, soup_models


def main(argv: list[str]) -> int:
    soup = argv[:1] == ["--soup"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if soup:
        argv = argv[1:]
        parser.add_argument("models", nargs="+")
    else:
        parser.add_argument("base")
        parser.add_argument("tuned")
        parser.add_argument("alpha", type=float)
    parser.add_argument("out")
    parser.add_argument("--model-version", required=True)
    args = parser.parse_args(argv)
    if soup:
        return derived_model(parser, args.out, args.model_version,
                             lambda: soup_models(args.models, args.out, args.model_version))
    return derived_model(parser, args.out, args.model_version,
                         lambda: interpolate_models(args.base, args.tuned, args.alpha, args.out, args.model_version))


def derived_model(parser: argparse.ArgumentParser, out: str, version: str, make: Callable[[], object]) -> int:
    """Run ``make`` (it writes a model folder into ``out`` from trained weights), then export that folder's
    ONNX graph; a refusal or a failed export ends in one line (also ``widen_model.py``'s)."""
    try:
        make()
    except ValueError as err:
        parser.error(str(err))
    if export_after_training(Path(out)) is None:
        parser.error(f"{out}: ONNX export failed")
    print(f"model {version}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
