"""Pack what a GPU machine needs beyond the repository for training, and unpack it there.

A device call carries the checkout and at most 64 MiB in all; ``../shared`` does not travel,
and the GPU image has PyTorch, NumPy and SciPy but not SimpleITK or nibabel. As they come,
SimpleITK's wheel (53 MB) and the label maps (32 MB) do not fit beside the repository (24 MB).
Packed here they do (about 38 MiB):

- ``packages.tar.xz``: SimpleITK, nibabel, slicerio and pynrrd as installed in this environment (the
  pinned versions), xz-compressed (SimpleITK's 270 MB library packs to ~27 MB);
- ``data.tar.xz``: the 20 SynthSeg label maps as uint8 indices into their label values, with
  their grids (re-written as NIfTI there; the synthesis checks each map's labels and grid
  against ``registrations.json``, so a map that came back different would be noticed, and the
  unpacking checks the same hashes first), the 27 MNI lesion masks as they are, the three MNI
  ICBM152 maps the phantoms are made from (nilearn's files, uncompressed and re-packed), and
  the datasets' licences and SOURCE.md;
- ``bundle.json``: versions and the hashes the unpacking verifies.

    .venv/bin/python benchmarks/gpu_bundle.py pack [--out .gpu]
    python3 benchmarks/gpu_bundle.py unpack .gpu --site /tmp/site --data /tmp/shared-data
      then: PYTHONPATH=DeepWML:/tmp/site DEEPWML_SHARED_DATA=/tmp/shared-data DEEPWML_MNI_DIR=/tmp/shared-data/mni

``benchmarks/gpu_train.sh`` does the unpacking and the run. Nothing in the bundle is committed
(``.gpu/`` is ignored); it is rebuilt from ``../shared/data`` and the environment.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64.0
#: what the engine needs beyond the GPU image: images, the phantoms' MNI maps, .seg.nrrd writing
PACKAGES = ("SimpleITK", "nibabel", "slicerio", "pynrrd")
MNI_KINDS = ("t1", "gm", "wm")
LABEL_MAPS = "synthseg-whole-head-label-maps"
LESION_MASKS = "lesjak2017-ms-lesion-masks-mni"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _xz_tar(path: Path, extreme: bool = False) -> tarfile.TarFile:
    return tarfile.open(path, "w:xz", preset=9 | (lzma.PRESET_EXTREME if extreme else 0))


def mni_dir() -> Path:
    from deepwml.phantom.anatomy import _template_dir

    return _template_dir()


def pack_packages(out: Path) -> dict:
    """The installed packages (and their dist-info), without tests and byte code."""
    import importlib.metadata as metadata

    versions = {}
    skip = ("/tests/", "/__pycache__/", ".pyc")
    with _xz_tar(out) as tar:
        for name in PACKAGES:
            dist = metadata.distribution(name)
            versions[name] = dist.version
            root = Path(dist.locate_file(""))
            for file in dist.files or []:
                rel = str(file)
                if rel.startswith("..") or any(s in "/" + rel for s in skip) or not (root / rel).is_file():
                    continue
                tar.add(root / rel, arcname=rel)
    return versions


def label_map_record(path: Path) -> tuple[np.ndarray, dict]:
    """A label map as uint8 indices into its label values, cropped to where they are not the
    first (background) value, and what rebuilds it exactly (values, crop, grid)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    labels = sitk.GetArrayFromImage(image)
    values, indices = np.unique(labels, return_inverse=True)
    if len(values) > 256:
        raise ValueError(f"{path}: {len(values)} labels do not fit uint8 indices")
    indices = indices.reshape(labels.shape).astype(np.uint8)
    inside = np.argwhere(indices > 0)
    lo, hi = inside.min(0), inside.max(0) + 1
    record = {"values": [int(v) for v in values], "shape": list(labels.shape), "crop_lo": lo.tolist(),
              "crop_shape": (hi - lo).tolist(), "origin": list(image.GetOrigin()),
              "spacing": list(image.GetSpacing()), "direction": list(image.GetDirection()),
              "labels_sha256": subject_labels_sha256(path)}
    return np.ascontiguousarray(indices[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]), record


def subject_labels_sha256(path: Path) -> str:
    """What the synthesis checks its stored registrations against (anatomy.labels_sha256)."""
    import SimpleITK as sitk

    from deepwml.synthesis.anatomy import _crop_to_head, labels_sha256

    image = sitk.Cast(_crop_to_head(sitk.ReadImage(str(path))), sitk.sitkInt16)
    return labels_sha256(image, sitk.GetArrayFromImage(image))


def pack_data(out: Path, data_root: Path) -> dict:
    record: dict = {"label_maps": {}, "mni": {}}
    with _xz_tar(out, extreme=True) as tar:  # ~2 min more, ~2 MiB less
        for path in sorted((data_root / LABEL_MAPS).glob("training_seg_*.nii.gz")):
            indices, entry = label_map_record(path)
            record["label_maps"][path.name] = entry
            _add_bytes(tar, f"label-maps/{path.name}.u8", indices.tobytes())
        for extra in ("LICENSE.txt", "SOURCE.md", "labels_table.txt"):
            if (data_root / LABEL_MAPS / extra).is_file():
                tar.add(data_root / LABEL_MAPS / extra, arcname=f"{LABEL_MAPS}/{extra}")
        for path in sorted((data_root / LESION_MASKS).iterdir()):
            if path.is_file():
                tar.add(path, arcname=f"{LESION_MASKS}/{path.name}")
        for kind in MNI_KINDS:
            name = f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii"
            raw = gzip.decompress((mni_dir() / f"{name}.gz").read_bytes())
            record["mni"][name] = _sha256(raw)
            _add_bytes(tar, f"mni/{name}", raw)
    return record


def tracked_mib() -> float:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return sum((REPO / f).stat().st_size for f in files.decode().split("\0") if f and (REPO / f).is_file()) / 2**20


def pack(out: Path, data_root: Path) -> int:
    import SimpleITK as sitk  # fails here, not half-way, if the environment lacks it

    print(f"SimpleITK {sitk.Version_VersionString()}")

    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    versions = {name: __import__("importlib.metadata").metadata.version(name) for name in PACKAGES}
    previous = out / "bundle.json"
    if (out / "packages.tar.xz").is_file() and previous.is_file() and \
            json.loads(previous.read_text(encoding="utf-8")).get("packages") == versions:
        manifest["packages"] = versions  # the same versions: packed before, kept
    else:
        print(f"packing {', '.join(PACKAGES)} (xz, a few minutes) ...", flush=True)
        manifest["packages"] = pack_packages(out / "packages.tar.xz")
    print("packing the label maps, lesion masks and MNI maps (xz, a few minutes) ...", flush=True)
    manifest["data"] = pack_data(out / "data.tar.xz", data_root)
    manifest["files"] = {p.name: _sha256(p.read_bytes()) for p in sorted(out.glob("*.tar.xz"))}
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:  # what the GPU machine will do, checked here
        unpack_packages(out, Path(tmp) / "site")
        unpack_data(out, Path(tmp) / "data", manifest)
    bundle = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    repo = tracked_mib()
    print(f"bundle {bundle:.1f} MiB + tracked files {repo:.1f} MiB = {bundle + repo:.1f} MiB "
          f"(a device call carries at most {LIMIT_MIB:.0f} MiB)")
    return 0 if bundle + repo < LIMIT_MIB - 1 else 1


def unpack_packages(bundle: Path, site: Path) -> None:
    site.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle / "packages.tar.xz", "r:xz") as tar:
        tar.extractall(site, filter="data")


def unpack_data(bundle: Path, data: Path, manifest: dict) -> None:
    """Rebuild the shared-data folders under ``data`` and check every hash (SimpleITK importable)."""
    import SimpleITK as sitk

    staging = data / ".staging"
    with tarfile.open(bundle / "data.tar.xz", "r:xz") as tar:
        tar.extractall(staging, filter="data")
    (data / LABEL_MAPS).mkdir(parents=True, exist_ok=True)
    for name, entry in manifest["data"]["label_maps"].items():
        crop = np.frombuffer((staging / "label-maps" / f"{name}.u8").read_bytes(), np.uint8)
        indices = np.zeros(entry["shape"], np.uint8)
        lo, size = entry["crop_lo"], entry["crop_shape"]
        indices[lo[0]:lo[0] + size[0], lo[1]:lo[1] + size[1], lo[2]:lo[2] + size[2]] = crop.reshape(size)
        labels = np.asarray(entry["values"], np.int16)[indices]
        image = sitk.GetImageFromArray(labels)
        image.SetOrigin(entry["origin"])
        image.SetSpacing(entry["spacing"])
        image.SetDirection(entry["direction"])
        sitk.WriteImage(image, str(data / LABEL_MAPS / name), True)
        if subject_labels_sha256(data / LABEL_MAPS / name) != entry["labels_sha256"]:
            raise SystemExit(f"{data / LABEL_MAPS / name}: labels or grid differ from the packed map")
    for extra in (staging / LABEL_MAPS).iterdir():
        shutil.copy2(extra, data / LABEL_MAPS / extra.name)
    shutil.copytree(staging / LESION_MASKS, data / LESION_MASKS, dirs_exist_ok=True)
    (data / "mni").mkdir(exist_ok=True)
    for name, digest in manifest["data"]["mni"].items():
        raw = (staging / "mni" / name).read_bytes()
        if _sha256(raw) != digest:
            raise SystemExit(f"{staging / 'mni' / name}: differs from the packed MNI map")
        (data / "mni" / f"{name}.gz").write_bytes(gzip.compress(raw, 6))
    shutil.rmtree(staging)


def unpack(bundle: Path, site: Path, data: Path) -> int:
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    for name, digest in manifest["files"].items():
        if _sha256((bundle / name).read_bytes()) != digest:
            raise SystemExit(f"{bundle / name}: damaged in transfer (SHA-256 differs)")
    unpack_packages(bundle, site)
    sys.path.insert(0, str(site))
    sys.path.insert(0, str(REPO / "DeepWML"))
    unpack_data(bundle, data, manifest)
    print(f"unpacked {', '.join(f'{k} {v}' for k, v in manifest['packages'].items())} into {site}; "
          f"{len(manifest['data']['label_maps'])} label maps, lesion masks and MNI maps into {data} (hashes checked)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, default=REPO / ".gpu")
    p.add_argument("--data", type=Path, default=None, help="shared data folder (default: ../shared/data)")
    u = sub.add_parser("unpack")
    u.add_argument("bundle", type=Path)
    u.add_argument("--site", type=Path, required=True)
    u.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()
    if args.verb == "pack":
        sys.path.insert(0, str(REPO / "DeepWML"))
        from deepwml.shared_data import default_data_root

        return pack(args.out, args.data or default_data_root())
    return unpack(args.bundle, args.site, args.data)


if __name__ == "__main__":
    sys.exit(main())
