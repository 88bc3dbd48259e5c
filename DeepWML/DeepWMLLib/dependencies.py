"""The one list of Python packages both DeepWML modules need beyond what 3D Slicer bundles.

Installed on first use, after the user agrees, inside the caller's error display (so a failed
install shows a dialog). Segmenting on the CPU needs no PyTorch (ONNX Runtime runs the bundled
model): PyTorch, the most common complaint against Slicer AI extensions, is asked for only
for CUDA, ``--backend torch`` and training (the ``torch`` group), and then comes through the
PyTorch extension's installer (it picks the CUDA build that fits the machine) with the version
floor below; the rest through pip.
SimpleITK and numpy ship with Slicer and are never replaced (Slicer's SimpleITK has its own IO).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional


@dataclass(frozen=True)
class Requirement:
    module: str          #: import name
    package: str         #: pip name
    floor: str           #: lowest version we support ("" = any)
    needed_for: str      #: "segment" (both modules), "torch" (CUDA, PyTorch backend), "train"
    #: (DeepWMLTraining), "phantoms" (self-tests)
    bundled: bool = False  #: ships with Slicer: checked, never installed

    @property
    def spec(self) -> str:
        return f"{self.package}>={self.floor}" if self.floor else self.package


#: Torch floor: inference_mode, channels-last, autocast on CPU and torch.load(weights_only=True).
TORCH_FLOOR = "2.1"

REQUIREMENTS: List[Requirement] = [
    Requirement("numpy", "numpy", "1.22", "segment", bundled=True),
    Requirement("SimpleITK", "SimpleITK", "2.2", "segment", bundled=True),
    Requirement("torch", "torch", TORCH_FLOOR, "torch"),
    Requirement("safetensors", "safetensors", "0.4", "segment"),
    Requirement("scipy", "scipy", "1.9", "segment"),
    Requirement("onnxruntime", "onnxruntime", "1.16", "segment"),
    # reads an int8 graph's stored weights on its first run (deepwml.onnx_int8.check_int8_weights)
    Requirement("onnx", "onnx", "1.16", "segment"),
    Requirement("tqdm", "tqdm", "4.60", "segment"),
    Requirement("slicerio", "slicerio", "1.1", "segment"),
    Requirement("matplotlib", "matplotlib", "3.5", "train"),
    Requirement("nibabel", "nibabel", "4.0", "phantoms"),
    Requirement("nilearn", "nilearn", "0.10", "phantoms"),
]

#: What each use needs ("train" includes everything segmentation needs).
GROUPS = {"segment": ("segment",), "torch": ("segment", "torch"), "train": ("segment", "torch", "train"),
          "phantoms": ("segment", "torch", "train", "phantoms")}


def use_for_segmentation(device: str, backend: str) -> str:
    """The dependency group a segmentation with these panel choices needs: ``torch`` only for
    CUDA or the PyTorch backend; ``auto`` runs the bundled model in ONNX Runtime on the CPU."""
    return "torch" if device.startswith("cuda") or backend == "torch" else "segment"


def _version_tuple(text: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def installed_version(package: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def missing(use: str = "segment", find_spec: Callable = importlib.util.find_spec,
            version_of: Callable[[str], Optional[str]] = installed_version) -> List[Requirement]:
    """Requirements of ``use`` that are not importable, or older than their floor."""
    result = []
    for req in REQUIREMENTS:
        if req.needed_for not in GROUPS[use]:
            continue
        if find_spec(req.module) is None:
            result.append(req)
            continue
        version = version_of(req.package)
        if req.floor and version and _version_tuple(version) < _version_tuple(req.floor):
            result.append(req)
    return result


def describe(requirements: Iterable[Requirement]) -> str:
    return ", ".join(r.spec for r in requirements)


class DependencyError(RuntimeError):
    """Packages could not be installed; the message names them and what to do."""


def install(requirements: List[Requirement], pip_install: Callable[[str], None],
            torch_installer: Optional[Callable[[str], object]] = None,
            log: Callable[[str], None] = print) -> None:
    """Install ``requirements``: torch through ``torch_installer(versionRequirement)`` when given
    (the PyTorch extension), everything else with ``pip_install``. Bundled packages are never
    installed: an outdated one raises, since replacing Slicer's copy breaks Slicer."""
    bundled = [r for r in requirements if r.bundled]
    if bundled:
        raise DependencyError(f"this 3D Slicer bundles {describe(bundled)} in a version DeepWML cannot use; "
                              "use 3D Slicer 5.6 or later")
    for req in requirements:
        log(f"Installing {req.spec} …")
        if req.module == "torch" and torch_installer is not None:
            if torch_installer(f">={req.floor}") is None:
                raise DependencyError("the PyTorch extension could not install PyTorch "
                                      f"{req.spec}; install it from the PyTorch Utils module")
        else:
            pip_install(req.spec)


def ensure_in_slicer(use: str = "segment", ask: bool = True, log: Callable[[str], None] = print) -> None:
    """Make sure ``use``'s packages are present inside 3D Slicer; raise :class:`DependencyError`
    (shown by the caller's ``slicer.util.tryWithErrorDisplay``) when they are not and cannot be."""
    import slicer

    todo = missing(use)
    if not todo:
        return
    large = " (PyTorch is large; this takes a few minutes, once.)" if any(r.module == "torch" for r in todo) else ""
    if ask and not slicer.util.confirmOkCancelDisplay(
            f"DeepWML needs these Python packages: {describe(todo)}.\nInstall them now?{large}",
            windowTitle="DeepWML"):
        raise DependencyError(f"DeepWML cannot run without {describe(todo)} (installation declined)")

    torch_installer = None
    try:
        import PyTorchUtils  # the PyTorch extension (DeepWML's extension dependency)

        torch_logic = PyTorchUtils.PyTorchUtilsLogic()

        def torch_installer(version_requirement: str):
            return torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=version_requirement)
    except ImportError:
        log("PyTorch extension not found; installing PyTorch with pip (CPU or the default CUDA build)")
    install(todo, slicer.util.pip_install, torch_installer, log)
    importlib.invalidate_caches()
    still = missing(use)
    if still:
        raise DependencyError(f"still missing after installation: {describe(still)}. "
                              "Restart 3D Slicer and try again; see the Python console for pip's output.")
