"""Where the air is: the intensity level that normalisation measures the head against.

Why this exists: the head mask used to be "brighter than a tenth of the robust maximum",
which silently assumes air is near 0. A FLAIR with an offset of +1000 (a DICOM rescale
intercept, some bias-correction or standardisation tools) then made the whole field of view
"head" and the bundled model reported 3,338 ml of lesion on a phantom with 6.6 ml; shifted,
all-negative and z-scored volumes went wrong the same way, with exit code 0.

The air level is read from the voxels on the 12 edges of the volume box (the in-plane corners
of every slice and the borders of the first and last slices). That set is the same whatever
the orientation or slice axis, so the check in :func:`deepwml.image_io.validate_flair` and the
normalisation see the same numbers. The edges are trusted as air only when their dark end (1st
percentile) lies at the dark end of the volume's intensity range; a field of view cut tight
through the head keeps
the previous assumption (air at 0), with a warning when that assumption is visibly false.

Scans whose air already lies within 5% of the head's range from 0 -- every scan the bundled
model was trained on (phantoms: 0.2-0.4%) -- keep exactly the previous normalisation (air level
0), so models of preprocessing version 2 stay valid. From 10% on, the measured level is used,
which makes the normalisation invariant to an offset and a positive scale; in between the two
are blended so that the mapping has no jump.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .counted_percentile import percentile

#: Air within this fraction of the head's range from 0 is taken as 0 (preprocessing v2 as trained).
LEGACY_AIR_FRACTION = 0.05
#: Air beyond this fraction of the head's range from 0 is used as measured.
MEASURED_AIR_FRACTION = 0.10
#: The edges are air when their level lies this close (fraction of the range) to the darkest
#: voxels; an image whose edges lie this close to the brightest ones looks inverted.
END_OF_RANGE = 0.10
#: The air level is this percentile of the edge voxels: the dark end of the air's noise, which
#: in a magnitude image starts at the true zero (the median would sit a few per cent of the head's
#: range higher and move the head mask: Dice 0.95 instead of 0.99 against the unshifted scan).
EDGE_PERCENTILE = 1.0
#: Robust range of the volume; these percentiles only steer decisions, so a sample is enough.
RANGE_PERCENTILES = (0.5, 99.5)
SAMPLE_STRIDE = 7


def edge_voxels(volume: np.ndarray) -> np.ndarray:
    """The voxels on the 12 edges of a 3D array (corners repeated; orientation independent)."""
    ends = [0, -1]
    return np.concatenate([volume[ends][:, ends].ravel(), volume[ends][:, :, ends].ravel(),
                           volume[:, ends][:, :, ends].ravel()])


@dataclass(frozen=True)
class IntensityProfile:
    """The numbers every intensity decision is taken from."""

    edge_level: float
    low: float
    high: float

    @property
    def span(self) -> float:
        return self.high - self.low

    @property
    def edges_dark(self) -> bool:
        """The edges of the field of view hold the darkest intensities: they are air."""
        return self.span > 0 and self.edge_level - self.low <= END_OF_RANGE * self.span

    @property
    def edges_bright(self) -> bool:
        """The edges are among the brightest intensities: air brighter than the head."""
        return (self.span > 0 and not self.edges_dark
                and self.high - self.edge_level <= END_OF_RANGE * self.span)

    def air_level(self) -> float:
        """The intensity the head is measured against (see the module docstring)."""
        head_range = self.high - self.edge_level
        if not self.edges_dark or head_range <= 0:
            return 0.0
        ratio = abs(self.edge_level) / head_range
        weight = np.clip((ratio - LEGACY_AIR_FRACTION) / (MEASURED_AIR_FRACTION - LEGACY_AIR_FRACTION), 0.0, 1.0)
        return float(weight * self.edge_level)


def intensity_profile(volume: np.ndarray) -> IntensityProfile:
    """Air level of the edges and robust range (0.5th-99.5th percentile of a regular sample) of a volume."""
    volume = np.asarray(volume)
    sample = volume.reshape(-1)[::SAMPLE_STRIDE]
    low, high = percentile(sample, RANGE_PERCENTILES)
    return IntensityProfile(float(np.percentile(edge_voxels(volume), EDGE_PERCENTILE)), float(low), float(high))


def air_level(volume: np.ndarray) -> float:
    """The air intensity of a 3D volume; 0 for every scan normalised as before (see above)."""
    return intensity_profile(volume).air_level()


def intensity_problems(volume: np.ndarray) -> tuple[str | None, str | None]:
    """``(refusal, warning)`` about a FLAIR's intensities, each None or one sentence.

    Refused: air brighter than the head (a negated image; its "lesions" would be dark).
    Warned: edges that are not dark (a tight field of view) in an image with clearly negative
    intensities, where the fallback "air is 0" is visibly false.
    """
    profile = intensity_profile(volume)
    if profile.edges_bright:
        return (f"intensities look inverted: the edges of the field of view (air, "
                f"{profile.edge_level:.4g}) are brighter than most of the head "
                f"(range {profile.low:.4g} to {profile.high:.4g}); a FLAIR with dark air is needed"), None
    if not profile.edges_dark and profile.low < -END_OF_RANGE * profile.span:
        return None, (f"the edges of the field of view are not dark air ({profile.edge_level:.4g}, "
                      f"range {profile.low:.4g} to {profile.high:.4g}), so the air level is assumed to "
                      "be 0, but the image has negative intensities: check the result")
    return None, None
