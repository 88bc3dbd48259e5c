"""Widen a lesion model function-preservingly (Net2WiderNet; see ``deepwml.training.widening``) and
export the result's ONNX graph, as the start of a fine-tune with more capacity.

    .venv/bin/python benchmarks/widen_model.py MODEL_DIR OUT_DIR --base-channels 22 --model-version V [--seed 0] [--noise 0.01]

Then ``deepwml train MANIFEST -o RUN --init OUT_DIR ...`` (the width comes from OUT_DIR's card). Why 22: FLOPs grow
with the width squared, so width 22 without flip TTA costs about what width 16 with it costs (1.89x vs 2 passes),
the only capacity the CPU speed target (< 2 s for 24 x 512^2) leaves. The threshold and contrast floor stay the source's until
``threshold_on_validation.py`` chooses one.
"""

from __future__ import annotations

import argparse
import sys

from deepwml.training.widening import DEFAULT_NOISE, widen_model

from interpolate_weights import derived_model  # a sibling script: benchmarks/ is on sys.path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--base-channels", type=int, required=True)
    parser.add_argument("--model-version", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=DEFAULT_NOISE)
    args = parser.parse_args(argv)
    return derived_model(parser, args.out, args.model_version, lambda: widen_model(
        args.model, args.out, args.base_channels, args.model_version, args.seed, args.noise))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
