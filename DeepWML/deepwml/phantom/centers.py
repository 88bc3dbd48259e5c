"""The nine acquisition "centers", after Table 1 of the DeepWML paper.

Five centers scan MS and NMOSD patients, four scan CSVD patients; each has its vendor, field
strength, slice thicknesses and in-plane resolutions as the paper lists them, and a
vendor-specific FLAIR contrast (tissue levels, gamma, stored intensity scale).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Center:
    name: str
    scanner: str
    field_t: float
    diseases: tuple[str, ...]
    thicknesses_mm: tuple[float, ...]
    pixels_mm: tuple[float, ...]
    #: FLAIR levels relative to white matter = 1: grey matter, CSF, lesion (mean), fat/scalp.
    gm: float
    csf: float
    lesion: float
    fat: float
    gamma: float
    scale: float
    noise: float  # Rician sigma as a fraction of the white-matter level
    bias: float  # peak-to-peak amplitude of the multiplicative bias field


CENTERS: tuple[Center, ...] = (
    Center("C1_GE_MR750_3T", "GE Discovery MR750", 3.0, ("MS", "NMOSD"), (5.0, 5.5, 6.0, 6.5),
           (0.4688, 0.9375), 1.30, 0.22, 1.95, 1.6, 1.00, 900.0, 0.035, 0.25),
    Center("C2_GE_MR750_3T", "GE Discovery MR750", 3.0, ("MS", "NMOSD"), (8.0,),
           (0.4688,), 1.35, 0.18, 2.05, 1.7, 0.95, 1100.0, 0.03, 0.20),
    Center("C3_Siemens_Skyra_3T", "Siemens Skyra", 3.0, ("MS", "NMOSD"), (6.5,),
           (0.4492, 0.7188), 1.25, 0.25, 1.80, 1.4, 1.10, 420.0, 0.04, 0.30),
    Center("C4_Siemens_Skyra_3T", "Siemens Skyra", 3.0, ("MS",), (4.0, 5.2, 5.36, 5.5, 6.5),
           (0.4102, 0.4297, 0.4395, 0.6875), 1.28, 0.20, 1.85, 1.5, 1.05, 380.0, 0.045, 0.30),
    Center("C5_Siemens_TrioTim_3T", "Siemens TrioTim", 3.0, ("MS", "NMOSD"),
           (3.0, 4.0, 5.0, 6.0, 6.5, 7.5), (0.4297, 0.4688, 0.5, 0.8, 0.9375),
           1.22, 0.28, 1.70, 1.3, 1.15, 650.0, 0.05, 0.35),
    Center("C6_GE_MR750_3T", "GE Discovery MR750", 3.0, ("CSVD",), (6.0, 6.5),
           (0.4688, 0.8976), 1.32, 0.20, 1.90, 1.6, 1.00, 950.0, 0.035, 0.25),
    Center("C7_Philips_Achieva_1.5T", "Philips Achieva", 1.5, ("CSVD",), (6.5, 7.0),
           (0.4492, 0.4688), 1.18, 0.30, 1.60, 1.2, 1.20, 2600.0, 0.06, 0.40),
    Center("C8_Philips_Achieva_1.5T", "Philips Achieva", 1.5, ("CSVD",), (6.0,),
           (0.4492,), 1.20, 0.27, 1.65, 1.25, 1.15, 2400.0, 0.055, 0.40),
    Center("C9_GE_Optima_MR360_1.5T", "GE Optima MR360 / Signa HDxt", 1.5, ("CSVD",),
           (6.5, 7.0, 7.8, 8.0), (0.4688,), 1.24, 0.24, 1.75, 1.5, 1.05, 800.0, 0.06, 0.35),
)

DISEASES = ("MS", "NMOSD", "CSVD")
