"""deepwml.components: the marks' box and their 26-connected components labelled inside it (the contrast floor and
the white-matter restriction both read them)."""

import numpy as np
from scipy import ndimage

from deepwml.components import bounding_box, components_in_box, in_plane_box


def test_the_box_holds_every_marked_voxel_and_nothing_marked_has_none():
    mask = np.zeros((5, 30, 40), bool)
    assert bounding_box(mask) is None and components_in_box(mask) is None and in_plane_box(mask) is None
    mask[1, 3, 7] = mask[3, 20, 30] = True
    assert bounding_box(mask) == (slice(1, 4), slice(3, 21), slice(7, 31))
    assert in_plane_box(mask) == (slice(3, 21), slice(7, 31)) and in_plane_box(mask[:1]) is None


def test_components_in_the_box_are_the_whole_volumes_26_connected_components():
    """Labelled inside the box, the components must be the ones the whole volume has: the same voxels grouped the same
    way (labels may be numbered otherwise), corner-touching voxels joined (26 neighbours), separate pieces apart."""
    rng = np.random.default_rng(5)
    marked = np.zeros((8, 60, 50), bool)
    marked[2:6, 10:40, 8:30] = rng.random((4, 30, 22)) > 0.95
    marked[7, 59, 49] = True  # on the volume's corner
    marked[0, 0, 0], marked[1, 1, 1] = True, True  # joined only through a corner
    box, labels, count = components_in_box(marked)
    whole, expected_count = ndimage.label(marked, structure=np.ones((3, 3, 3), bool))
    assert count == expected_count > 10
    inside = np.zeros(marked.shape, labels.dtype)
    inside[box] = labels
    assert ((inside > 0) == marked).all()
    pairs = set(zip(inside[marked].tolist(), whole[marked].tolist()))  # one-to-one: the same grouping
    assert len(pairs) == count == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert inside[0, 0, 0] == inside[1, 1, 1]
