"""Test-only stand-in for 3D Slicer's ``slicer.ScriptedLoadableModule`` (CI has no Slicer app).

slicer-core gives real MRML headless but not this module. The ``slicer`` package extends its
path over every ``slicer/`` folder on ``sys.path`` (pkgutil.extend_path) and copies their
public names onto itself, so putting this folder's parent on ``sys.path`` before
``import slicer`` makes the real module files importable and their self-test classes
runnable under pytest, against a real ``vtkMRMLScene`` (``slicer.mrmlScene``).
Nothing here is shipped with the extension.
"""

from __future__ import annotations

import logging
import os
import unittest

import slicer_core as _core

#: The scene the module code and self-tests use, as in the app.
mrmlScene = _core.vtkMRMLScene()

_log = logging.getLogger("slicer-shim")


class ScriptedLoadableModule:
    def __init__(self, parent) -> None:
        self.parent = parent

    def resourcePath(self, filename: str) -> str:
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None) -> None:
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.parent = parent

    def setup(self) -> None:  # the real one builds the Reload & Test panel (Qt)
        pass


class ScriptedLoadableModuleTest(unittest.TestCase):
    """Same surface as the app's: ``delayDisplay``, ``setUp``, ``runTest``."""

    def __init__(self, methodName: str = "runTest") -> None:
        super().__init__(methodName)

    def delayDisplay(self, message: str, msec: int = 0) -> None:
        _log.info(message)

    def runTest(self) -> None:  # overridden by each module's test
        pass
