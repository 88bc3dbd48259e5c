"""The DeepWML panel's parameter node: what a saved scene restores.

``parameterNodeWrapper`` (Slicer 5.2+) evaluates these annotations at run time, so this file
uses ``Optional``/``Annotated`` only (no ``X | Y``: Slicer 5.6/5.8 run Python 3.9) and no
``from __future__ import annotations``. Each field is bound to the .ui widget whose
``SlicerParameterName`` property names it. Without the application (tests, batch) the class
stays a plain annotated class and :data:`FIELDS` lists its defaults.
"""

from typing import Annotated, Optional

import slicer

try:
    from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
except ImportError:  # headless MRML: no parameter node wrapper, same class without it
    def parameterNodeWrapper(cls):
        return cls

    class _Marker:
        def __init__(self, *args) -> None:
            self.args = args

    Choice = WithinRange = _Marker

DEVICES = ["auto", "cpu", "cuda"]
BACKENDS = ["auto", "torch", "onnx"]
#: auto = float32; int8: the model's quantised graph on the CPU (faster, worse masks: a quick look; README "Speed")
PRECISIONS = ["auto", "int8"]
#: how a thin-slice (< 2 mm, 3D) volume is seen: every native slice (the default) or through a sliding
#: 3 mm slab around every slice (``--sliding-slab-mm 3``; README "Sliding slabs")
#: (choice -> the engine's sliding slab in mm; 0: none)
THIN_SLICES = {"every slice": 0.0, "sliding 3 mm slabs": 3.0}


@parameterNodeWrapper
class DeepWMLParameterNode:
    inputVolume: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    outputSegmentation: Optional[slicer.vtkMRMLSegmentationNode] = None
    device: Annotated[str, Choice(DEVICES)] = "auto"
    backend: Annotated[str, Choice(BACKENDS)] = "auto"
    precision: Annotated[str, Choice(PRECISIONS)] = "auto"
    threshold: Annotated[float, WithinRange(0.05, 0.95)] = 0.5
    #: lesion probabilities only inside the brain (the bundled brain-mask network; README "Brain mask")
    brainMask: bool = True
    #: marked components away from the white matter removed (the bundled white-matter network; README
    #: "White-matter restriction")
    whiteMatter: bool = True
    thinSlices: Annotated[str, Choice(list(THIN_SLICES))] = "every slice"


FIELDS = {"inputVolume": None, "outputSegmentation": None, "device": "auto", "backend": "auto",
          "precision": "auto", "threshold": 0.5, "brainMask": True, "whiteMatter": True,
          "thinSlices": "every slice"}
