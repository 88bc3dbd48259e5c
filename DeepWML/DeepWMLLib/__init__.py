"""Slicer-side helpers shared by the DeepWML and DeepWMLTraining modules.

Nothing here imports Qt at module level, so every helper runs (and is tested) against headless
MRML without the application: ``dependencies`` (one list of Python packages, installed on first
use), ``jobs`` (background processes with cancel that ends the whole process tree),
``segmentation`` (writing results into MRML nodes), ``panel`` (what the panels show, computed
without widgets), ``parameters`` (parameter node), ``settings`` (model choice kept in Slicer's
settings) and ``terminology``.
"""
