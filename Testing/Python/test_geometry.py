"""Slice layout and canvas mapping: output grids equal input grids exactly."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import synthetic_flair
from deepwml.preprocessing import CanvasMapping, normalize_intensity
from deepwml.segmenter import Segmenter
from deepwml.slice_layout import image_from_slices, plan_slices


def rotation_direction(deg_x: float, deg_z: float) -> tuple[float, ...]:
    ax, az = np.deg2rad([deg_x, deg_z])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return tuple((rz @ rx).ravel())


SAGITTAL = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # i->P... k->L: thick axis left-right
CASES = {
    "axial": dict(size=(64, 48, 12), spacing=(0.9, 0.9, 5.0)),
    "axial_flipped": dict(size=(64, 48, 12), spacing=(0.9, 0.9, 5.0),
                          direction=(-1.0, 0, 0, 0, -1.0, 0, 0, 0, -1.0)),
    "oblique": dict(size=(60, 50, 14), spacing=(0.8, 0.7, 6.0), direction=rotation_direction(17, -23)),
    "sagittal": dict(size=(56, 64, 10), spacing=(0.9, 0.9, 5.5), direction=SAGITTAL),
}


@pytest.mark.parametrize("name", list(CASES))
def test_slice_layout_round_trip_and_thick_axis(name):
    img = synthetic_flair(**CASES[name])
    layout = plan_slices(img)
    arr = sitk.GetArrayFromImage(img)
    slices = layout.to_slices(arr)
    assert layout.slice_thickness_mm == pytest.approx(max(img.GetSpacing()))
    assert slices.shape[0] == img.GetSize()[int(np.argmax(img.GetSpacing()))]
    np.testing.assert_array_equal(layout.to_volume(slices), arr)


def test_axial_flipped_slices_are_reoriented_like_axial():
    """A volume stored with flipped index axes gives the same slices as the LPS-stored one."""
    plain = synthetic_flair(**CASES["axial"])
    arr = sitk.GetArrayFromImage(plain)
    flipped = sitk.GetImageFromArray(arr[::-1, ::-1, ::-1].copy())
    flipped.SetSpacing(plain.GetSpacing())
    flipped.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, -1.0))
    a = plan_slices(plain).to_slices(arr)
    b = plan_slices(flipped).to_slices(sitk.GetArrayFromImage(flipped))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(CASES))
def test_segmentation_lies_on_the_input_grid_exactly(name, tiny_model_dir):
    img = synthetic_flair(**CASES[name])
    result = Segmenter(str(tiny_model_dir), device="cpu", precision="float32").segment(img)
    for out in (result.probabilities, result.mask):
        assert out.GetSize() == img.GetSize()
        assert out.GetSpacing() == img.GetSpacing()
        assert out.GetOrigin() == img.GetOrigin()
        assert out.GetDirection() == img.GetDirection()


def test_image_from_slices_copies_geometry():
    img = synthetic_flair(**CASES["oblique"])
    layout = plan_slices(img)
    back = image_from_slices(layout.to_slices(sitk.GetArrayFromImage(img)), layout, img)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert back.GetDirection() == img.GetDirection()


def blocky_mask(shape, block, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0] // block, shape[1] // block)) < 0.3
    return np.kron(coarse, np.ones((block, block), dtype=bool))


@pytest.mark.parametrize("shape,spacing", [((256, 256), (0.9, 0.9)), ((200, 256), (0.9, 0.9)),
                                           ((256, 180), (0.9, 0.9)), ((128, 256), (1.0, 0.5))])
def test_canvas_inverse_is_exact_without_downsampling(shape, spacing):
    """Where the canvas keeps every native pixel (resize factor 1 + padding), the round trip is
    the identity on any mask."""
    mapping = CanvasMapping.for_slices(shape, spacing)
    rng = np.random.default_rng(1)
    mask = rng.random((3, 1, *shape)) < 0.2
    canvas = mapping.to_canvas(mask.astype(np.float32))
    assert canvas.shape[-2:] == (256, 256)
    back = mapping.to_native(canvas)
    np.testing.assert_array_equal(back >= 0.5, mask)


@pytest.mark.parametrize("shape", [(512, 512), (448, 448)])
def test_canvas_inverse_on_downsampled_grid(shape):
    """At 512 (factor 2) a mask made of 2x2 blocks survives exactly; coordinates invert exactly."""
    mapping = CanvasMapping.for_slices(shape, (0.47, 0.47))
    rows = np.linspace(0, shape[0] - 1, 37)
    cols = np.linspace(0, shape[1] - 1, 41)
    r2, c2 = mapping.canvas_to_native_coords(*mapping.native_to_canvas_coords(rows, cols))
    np.testing.assert_allclose(r2, rows, atol=1e-9)
    np.testing.assert_allclose(c2, cols, atol=1e-9)
    if shape == (512, 512):
        mask = blocky_mask(shape, 2)
        back = mapping.to_native(mapping.to_canvas(mask[None, None].astype(np.float32)))
        np.testing.assert_array_equal(back[0, 0] >= 0.5, mask)


def test_canvas_keeps_physical_aspect_ratio():
    mapping = CanvasMapping.for_slices((300, 400), (1.0, 0.75))  # 300 mm x 300 mm
    assert mapping.resized_shape == (256, 256)
    mapping = CanvasMapping.for_slices((200, 400), (1.0, 1.0))  # 200 mm x 400 mm
    assert mapping.resized_shape == (128, 256)
    assert mapping.offset == (64, 0)


def test_normalization_ignores_hot_voxels_and_air():
    rng = np.random.default_rng(0)
    vol = np.zeros((10, 64, 64), np.float32)
    vol[:, 16:48, 16:48] = rng.normal(500, 20, (10, 32, 32))
    hot = vol.copy()
    hot[0, 20, 20] = 1e6  # a single hot voxel
    a, b = normalize_intensity(vol), normalize_intensity(hot)
    np.testing.assert_allclose(a[1:], b[1:], atol=1e-3)
    assert a[:, :8].max() == 0.0  # air maps to 0


def test_normalization_keeps_lesions_bright_under_heavy_lesion_load():
    """Confluent small-vessel disease must not dim its own lesions (a percentile-scaling flaw)."""
    rng = np.random.default_rng(0)

    def volume(lesion_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        vol = np.zeros((10, 64, 64), np.float32)
        vol[:, 8:56, 8:56] = rng.normal(500, 15, (10, 48, 48))
        lesion = np.zeros(vol.shape, bool)
        n = max(1, int(round(lesion_fraction * 48)))
        lesion[:, 8:8 + n, 8:56] = True
        vol[lesion] = rng.normal(800, 15, lesion.sum())
        return vol, lesion

    light, light_mask = volume(0.02)
    heavy, heavy_mask = volume(0.15)
    a = np.median(normalize_intensity(light)[light_mask])
    b = np.median(normalize_intensity(heavy)[heavy_mask])
    assert abs(a - b) < 0.05 and a > 1.4


@pytest.mark.parametrize("shape,size", [((512, 512), (256, 256)), ((448, 400), (256, 229)),
                                        ((256, 256), (512, 512)), ((229, 256), (448, 400)),
                                        ((300, 200), (256, 256)), ((120, 300), (256, 200))])
def test_numpy_resize_reproduces_pytorch(shape, size):
    """The numpy resampling (so segmentation needs no PyTorch) is what preprocessing version 2
    was trained with: shrinking bit-identical to adaptive_avg_pool2d, enlarging (and mixed,
    antialiased) within 2 units in the last place of PyTorch's bilinear interpolation."""
    import torch.nn.functional as F

    from deepwml.resize import resize

    x = np.random.default_rng(3).random((3, 1, *shape)).astype(np.float32)
    t = torch.from_numpy(x)
    got = resize(x, size)
    assert got.dtype == np.float32 and got.shape == (3, 1, *size)
    if size[0] <= shape[0] and size[1] <= shape[1]:
        np.testing.assert_array_equal(got, F.adaptive_avg_pool2d(t, size).numpy())
    else:
        mixed = not (size[0] >= shape[0] and size[1] >= shape[1])
        ref = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=mixed).numpy()
        assert np.abs(got - ref).max() <= 2.5e-7


@pytest.mark.parametrize("shape,size", [((256, 256), (512, 512)), ((229, 256), (448, 400)), ((512, 512), (256, 256)),
                                        ((120, 300), (256, 200)), ((64, 64), (64, 64))])
def test_resize_into_a_box_gives_the_whole_outputs_values_there(shape, size):
    """A box of the output (what the segmenter reads of a mask on the input grid) holds bit for bit the whole
    output's values: enlarging computes only the box, from only the input rows it needs; the other cases crop."""
    from deepwml.resize import resize

    x = np.random.default_rng(4).random((2, 1, *shape)).astype(np.float32)
    whole = resize(x, size)
    for box in ((slice(0, size[0]), slice(0, size[1])), (slice(3, size[0] // 2), slice(size[1] // 3, size[1] - 1)),
                (slice(size[0] - 1, size[0]), slice(0, 1)), (slice(5, 5), slice(0, 4))):
        np.testing.assert_array_equal(resize(x, size, box), whole[..., box[0], box[1]])
