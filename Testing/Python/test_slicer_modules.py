"""The modules' own self-test classes (what "Reload and Test" runs in 3D Slicer), run here
against real headless MRML from slicer-core, plus static checks of the module files."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).resolve().parent / "slicer_shim"
MODULES = {"DeepWML": ROOT / "DeepWML", "DeepWMLTraining": ROOT / "DeepWMLTraining"}
QT_MODULES = {"qt", "ctk", "slicer.qSlicerWidget", "PythonQt"}


@pytest.fixture(scope="module")
def slicer_env():
    if "slicer" in sys.modules and not hasattr(sys.modules["slicer"], "ScriptedLoadableModuleTest"):
        pytest.skip("slicer was imported before the test shim was on sys.path")
    for path in [SHIM, *MODULES.values()]:
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import slicer

    assert hasattr(slicer, "mrmlScene")
    return slicer


def test_deepwml_self_test(slicer_env):
    import DeepWML

    DeepWML.DeepWMLTest().runTest()


def test_deepwml_training_self_test(slicer_env, phantom_set, tmp_path):
    import DeepWMLTraining

    test = DeepWMLTraining.DeepWMLTrainingTest()
    test.manifestPath, test.workDir = str(phantom_set), str(tmp_path)
    test.runTest()


@pytest.mark.parametrize("name", list(MODULES))
def test_ui_file_parses_and_names_the_widgets_the_code_uses(name):
    ui = MODULES[name] / "Resources" / "UI" / f"{name}.ui"
    tree = ET.parse(ui)
    names = {w.get("name") for w in tree.iter("widget")}
    source = (MODULES[name] / f"{name}.py").read_text(encoding="utf-8")
    used = {node.attr for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"}
    assert used, "the module uses no ui widgets?"
    assert used <= names, f"{ui} lacks widgets {sorted(used - names)}"


@pytest.mark.parametrize("name", list(MODULES))
def test_qt_is_imported_only_inside_widget_classes(name):
    tree = ast.parse((MODULES[name] / f"{name}.py").read_text(encoding="utf-8"))

    def imports(node):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                yield from (a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom) and sub.module:
                yield sub.module

    widget_classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Widget")]
    inside = {id(n) for cls in widget_classes for n in ast.walk(cls)}
    outside = [m for n in ast.walk(tree) if id(n) not in inside and isinstance(n, (ast.Import, ast.ImportFrom))
               for m in imports(n)]
    assert not set(outside) & QT_MODULES, f"Qt imported outside a Widget class: {set(outside) & QT_MODULES}"


@pytest.mark.parametrize("name", list(MODULES))
def test_module_cmake_lists_every_script_and_resource(name):
    cmake = (MODULES[name] / "CMakeLists.txt").read_text(encoding="utf-8").replace("${MODULE_NAME}", name)
    assert "slicerMacroBuildScriptedModule" in cmake
    assert f"{name}.py" in cmake
    for resource in (MODULES[name] / "Resources").rglob("*"):
        if resource.is_file():  # UI, icons and the bundled model's files all ship with the module
            assert str(resource.relative_to(MODULES[name])) in cmake, f"{resource} not in {name}/CMakeLists.txt"
