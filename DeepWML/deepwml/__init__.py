"""DeepWML engine: white matter hyperintensity segmentation on clinical 2D FLAIR.

A plain Python package (no Slicer import anywhere) so that every capability runs in batch,
in CI and on a GPU server; the 3D Slicer modules are thin shells over it.
"""

__version__ = "0.1.0"
