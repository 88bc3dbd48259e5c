"""Static checks of what 3D Slicer loads: the Python version the code needs, the extension's
metadata, the terminology files and the single dependency list. None of these need the app."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "DeepWML"
#: Slicer 5.6 and 5.8 embed Python 3.9 (5.10 and later 3.12): the oldest Slicer we support.
SLICER_PYTHON = "3.9"
#: Everything Slicer imports: both modules, their shared helpers and the engine.
SLICER_TREES = [MODULE_DIR / "DeepWML.py", MODULE_DIR / "DeepWMLLib", MODULE_DIR / "deepwml",
                ROOT / "DeepWMLTraining"]
#: Files whose annotations are evaluated at run time (parameterNodeWrapper reads them).
EVALUATED_ANNOTATIONS = {MODULE_DIR / "DeepWMLLib" / "parameters.py"}


def _python_files():
    for tree in SLICER_TREES:
        yield from ([tree] if tree.is_file() else sorted(tree.rglob("*.py")))


def _annotation_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations = [a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                                                  args.vararg, args.kwarg] if a is not None]
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for a in annotations:
            if a is not None:
                lines.update(range(a.lineno, a.end_lineno + 1))
    return lines


def _runtime_unions(tree: ast.AST) -> list[int]:
    """Lines with ``X | None``-style type unions evaluated at run time (outside annotations)."""
    inside = set()
    for node in ast.walk(tree):
        parts = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            parts = [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x]
            parts.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            parts = [node.annotation]
        for part in parts:
            if part is not None:
                inside.update(id(n) for n in ast.walk(part))
    typey = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "Path"}

    def is_type(n):
        return (isinstance(n, ast.Constant) and n.value is None) or (isinstance(n, ast.Name) and n.id in typey) \
            or isinstance(n, ast.Subscript)

    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
            and id(n) not in inside and (is_type(n.left) or is_type(n.right))]


def test_code_runs_on_the_python_of_the_oldest_supported_slicer():
    """vermin (pinned in requirements.txt) over everything Slicer imports, against Python 3.9.

    vermin flags ``X | Y`` even in annotations that ``from __future__ import annotations``
    leaves unevaluated, so those are allowed; a union evaluated at run time (e.g. inside a
    ``Callable[...]`` alias, which broke import on Slicer 5.6/5.8) is not."""
    files = [str(p) for p in _python_files()]
    run = subprocess.run([sys.executable, "-m", "vermin", "--no-tips", "--format", "parsable",
                          "--feature", "union-types", f"-t={SLICER_PYTHON}-", "--violations", *files],
                         capture_output=True, text=True)
    problems = []
    for line in run.stdout.splitlines():
        path, lineno, _col, _py2, py3, feature = (line.split(":", 5) + [""] * 6)[:6]
        if not path or not lineno:
            continue  # per-file and overall summary lines
        file = Path(path)
        if feature.startswith("union types") and file not in EVALUATED_ANNOTATIONS:
            source = file.read_text(encoding="utf-8")
            tree = ast.parse(source)
            future = "from __future__ import annotations" in source
            if future and int(lineno) in _annotation_lines(tree) and int(lineno) not in _runtime_unions(tree):
                continue
        problems.append(f"{file.relative_to(ROOT)}:{lineno} needs Python {py3}: {feature}")
    assert run.returncode in (0, 1), run.stderr
    assert not problems, "\n".join(problems)


def test_runtime_union_check_catches_the_callable_alias():
    """The check above would have caught deepwml/segmenter.py's ``Callable[[int, int], bool | None]``."""
    tree = ast.parse("from typing import Callable\nProgress = Callable[[int, int], bool | None]\n"
                     "def f(x: int | None) -> str | None: ...\n")
    assert _runtime_unions(tree) == [2]
    assert _annotation_lines(tree) == {3}


def test_evaluated_annotations_avoid_new_syntax():
    """parameterNodeWrapper evaluates its class's annotations: no ``X | Y`` there at all."""
    for file in EVALUATED_ANNOTATIONS:
        tree = ast.parse(file.read_text(encoding="utf-8"))
        assert not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in ast.walk(tree))
        bad = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)]
        assert not bad, f"{file}: `|` on lines {bad}"


# --- extension metadata -------------------------------------------------------------------
S4EXT_KEYS = {"scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors",
              "category", "iconurl", "status", "description", "screenshoturls", "enabled"}


def _s4ext() -> dict[str, str]:
    fields = {}
    for line in (ROOT / "DeepWML.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            fields[key] = value.strip()
    return fields


def _cmake_var(name: str) -> str:
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    match = re.search(rf'set\({name} "([^"]*)"\)', text)
    assert match, f"{name} not set in CMakeLists.txt"
    return match.group(1)


def _repo_file_of(url: str) -> Path:
    prefix = "https://raw.githubusercontent.com/deepwml/SlicerDeepWML/main/"
    assert url.startswith(prefix), url
    return ROOT / url[len(prefix):]


def test_s4ext_is_valid_and_consistent_with_cmake():
    fields = _s4ext()
    assert set(fields) <= S4EXT_KEYS, f"unknown keywords {set(fields) - S4EXT_KEYS}"
    assert {"scm", "scmurl", "category", "depends", "description"} <= set(fields)
    depends = fields["depends"].split()
    # the .s4ext format has no "(optional)" marker: each token is an extension name, or NA alone
    assert depends == ["NA"] or all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", d) for d in depends), depends
    cmake_depends = _cmake_var("EXTENSION_DEPENDS").split()
    assert depends == cmake_depends
    assert fields["category"] == _cmake_var("EXTENSION_CATEGORY")
    assert fields["homepage"] == _cmake_var("EXTENSION_HOMEPAGE")
    assert fields["iconurl"] == _cmake_var("EXTENSION_ICONURL")
    for url in [fields["iconurl"], *fields["screenshoturls"].split(), _cmake_var("EXTENSION_ICONURL"),
                *_cmake_var("EXTENSION_SCREENSHOTURLS").split()]:
        assert _repo_file_of(url).is_file(), url
    assert fields["enabled"] in ("0", "1")


def test_extensions_index_json_description():
    """Slicer 5.8+ Extensions Index entry (schema v1.0.1: required keys, no others)."""
    entry = json.loads((ROOT / "DeepWML.json").read_text(encoding="utf-8"))
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry.get("tier", 1) in (1, 3, 5)
    fields = _s4ext()
    assert entry["category"] == fields["category"]
    assert entry["scm_url"] == fields["scmurl"]
    assert entry.get("scm_revision") == fields["scmrevision"]
    deps = [d for d in fields["depends"].split() if d != "NA"]
    assert entry.get("build_dependencies", []) == deps


def test_license_is_apache_2_as_pyproject_says():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "Apache-2.0"}


def test_supported_slicer_version_is_stated_everywhere():
    assert re.search(r'DEEPWML_MINIMUM_SLICER_VERSION "5\.6"', (ROOT / "CMakeLists.txt").read_text())
    assert "5.6 and later" in _s4ext()["description"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "3D Slicer 5.6" in readme


# --- module build lists -------------------------------------------------------------------
def test_shared_lib_ships_with_the_module():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    for script in sorted((MODULE_DIR / "DeepWMLLib").glob("*.py")):
        assert f"DeepWMLLib/{script.name}" in cmake, f"{script.name} not in DeepWML/CMakeLists.txt"


# --- terminology ------------------------------------------------------------------------------
def test_segment_terminology_is_found_in_the_shipped_context():
    """Load the shipped .term.json files with Slicer's own terminology logic (slicer-core) and
    look up the entry the segment carries: the selector would otherwise open empty."""
    slicer = pytest.importorskip("slicer")
    sys.path.insert(0, str(MODULE_DIR))
    from DeepWMLLib import terminology

    from deepwml.segmentation_io import SEGMENT_COLOR, terminology_string

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    terminology_name, region_name = terminology.load(logic)
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.DeserializeTerminologyEntry(terminology_string(), entry)
    assert entry.GetTerminologyContextName() == terminology_name
    assert entry.GetRegionContextName() == region_name
    category, type_ = slicer.vtkSlicerTerminologyCategory(), slicer.vtkSlicerTerminologyType()
    found = False
    for c in range(logic.GetNumberOfCategoriesInTerminology(terminology_name)):
        logic.GetNthCategoryInTerminology(terminology_name, c, category)
        if category.GetCodeValue() != entry.GetCategoryObject().GetCodeValue():
            continue
        for t in range(logic.GetNumberOfTypesInTerminologyCategory(terminology_name, category)):
            logic.GetNthTypeInTerminologyCategory(terminology_name, category, t, type_)
            if (type_.GetCodingSchemeDesignator(), type_.GetCodeValue()) == (
                    entry.GetTypeObject().GetCodingSchemeDesignator(), entry.GetTypeObject().GetCodeValue()):
                found = True
                assert [round(255 * c) for c in SEGMENT_COLOR] == list(type_.GetRecommendedDisplayRGBValue())
    assert found, "the segment's category/type is not in the shipped terminology"
    assert category.GetShowAnatomy()
    region = slicer.vtkSlicerTerminologyType()
    assert logic.GetNumberOfRegionsInRegionContext(region_name) >= 1
    logic.GetNthRegionInRegionContext(region_name, 0, region)
    assert region.GetCodeValue() == entry.GetRegionObject().GetCodeValue()


# --- one dependency list ---------------------------------------------------------------------
def test_dependency_floors_hold_for_the_tested_pins():
    sys.path.insert(0, str(MODULE_DIR))
    from DeepWMLLib.dependencies import REQUIREMENTS, _version_tuple

    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    for req in REQUIREMENTS:
        assert req.package.lower() in pins, f"{req.package} is not in requirements.txt"
        assert _version_tuple(pins[req.package.lower()]) >= _version_tuple(req.floor), req


@pytest.mark.parametrize("module", ["DeepWML/DeepWML.py", "DeepWMLTraining/DeepWMLTraining.py"])
def test_modules_use_the_one_dependency_list(module):
    source = (ROOT / module).read_text(encoding="utf-8")
    assert "pip_install" not in source, "install through DeepWMLLib.dependencies only"
    assert "ensure_in_slicer" in source
    tree = ast.parse(source)
    # every install the panel triggers sits inside `with slicer.util.tryWithErrorDisplay(...)`
    # (the self-tests install what they need in try/except and skip with a message instead)
    widgets = [c for c in tree.body if isinstance(c, ast.ClassDef) and c.name.endswith("Widget")]
    calls = [n for w in widgets for n in ast.walk(w)
             if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "ensure_in_slicer"]
    guarded = {id(c) for w in ast.walk(tree) if isinstance(w, ast.With)
               and any("tryWithErrorDisplay" in ast.unparse(item.context_expr) for item in w.items)
               for c in ast.walk(w)}
    assert calls and all(id(c) in guarded for c in calls), "a failed install must show a dialog"


@pytest.mark.parametrize("module", ["DeepWML/DeepWML.py", "DeepWMLTraining/DeepWMLTraining.py"])
def test_widgets_end_their_jobs_on_cleanup(module):
    """Slicer calls Widget.cleanup() on exit and reload: a running job must not outlive it."""
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    widget = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name.endswith("Widget"))
    cleanup = next((f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == "cleanup"), None)
    assert cleanup is not None, f"{widget.name} has no cleanup()"
    assert "cancel(" in ast.unparse(cleanup)


@pytest.mark.parametrize("script", sorted((MODULE_DIR / "DeepWMLLib").glob("*.py")), ids=lambda p: p.name)
def test_shared_lib_has_no_module_level_qt(script):
    """DeepWMLLib is imported by logic classes and tests: Qt only inside functions."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"qt", "ctk", "PythonQt"}
