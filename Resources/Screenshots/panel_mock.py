"""Render a mock of the DeepWML and DeepWML Training panels (README) with real numbers.

The numbers come from running the module's logic on the bundled sample FLAIR in headless MRML
(slicer-core); the panel is drawn in HTML after the .ui layouts and screenshotted with headless
Chromium, because the 3D Slicer application itself is not available to this project. Run:
``.venv/bin/python Resources/Screenshots/panel_mock.py`` (needs ``chromium`` on PATH).
"""

from __future__ import annotations

import html
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "Testing" / "Python" / "slicer_shim"), str(ROOT / "DeepWML")]

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402

import DeepWML  # noqa: E402
from DeepWMLLib import panel  # noqa: E402

CSS = """
body { margin: 0; font: 13px 'DejaVu Sans', Arial, sans-serif; background: #e9e9e9; }
.row { display: flex; gap: 18px; padding: 14px; align-items: flex-start; }
.panel { width: 430px; background: #f4f4f4; border: 1px solid #b9b9b9; padding: 8px; }
.title { font-weight: bold; font-size: 15px; margin: 2px 0 8px; }
.collapsible { border: 1px solid #c5c5c5; border-radius: 3px; margin: 6px 0; background: #fafafa; }
.collapsible > .head { background: linear-gradient(#fdfdfd, #e2e2e2); padding: 4px 6px; font-weight: bold; }
.collapsible > .head:before { content: '▾ '; } .collapsed > .head:before { content: '▸ '; }
.collapsible > .body { padding: 6px; } .collapsed > .body { display: none; }
.form { display: grid; grid-template-columns: 140px 1fr; gap: 5px 6px; align-items: center; }
.combo { border: 1px solid #a9a9a9; background: #fff; padding: 2px 6px; border-radius: 2px; }
.combo:after { content: ' ▾'; float: right; color: #555; }
.button { display: inline-block; border: 1px solid #9a9a9a; border-radius: 3px; padding: 4px 10px;
          background: linear-gradient(#fff, #e4e4e4); text-align: center; }
.disabled { color: #a0a0a0; }
.wide { display: block; margin: 6px 0; font-weight: bold; }
.note { color: #5a4a00; background: #fff6cc; border: 1px solid #e6d27a; padding: 4px 6px; }
.result { padding: 5px 2px; white-space: pre-line; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { border: 1px solid #cfcfcf; padding: 2px 6px; text-align: left; } th { background: #ececec; }
tr.sel td { background: #cde3f7; }
.bar { height: 14px; border: 1px solid #999; background: #fff; } .bar div { height: 100%; background: #3b87d8; }
.caption { color: #444; font-size: 11px; margin-top: 6px; }
.steps .button { margin: 2px 4px 2px 0; }
"""


def real_numbers():
    """Run the logic on the sample FLAIR exactly as the panel's "Segment lesions" does."""
    image = sitk.ReadImage(DeepWML.sampleDataPath())
    volume = slicer.util.addVolumeFromArray(sitk.GetArrayFromImage(image).astype(np.float32), name="MS_FLAIR")
    volume.SetSpacing(image.GetSpacing())
    node, summary = DeepWML.DeepWMLLogic().segment(volume, device="cpu")
    return summary


def deepwml_panel(summary) -> str:
    rows = "".join(f"<tr class='{'sel' if i == 0 else ''}'>" + "".join(f"<td>{html.escape(c)}</td>" for c in row)
                   + "</tr>" for i, row in enumerate(panel.lesion_rows(summary["lesions"])[:6]))
    more = len(summary["lesions"]) - 6
    return f"""
<div class="panel"><div class="title">DeepWML</div>
 <div class="note">{html.escape(panel.model_line(None))}</div>
 <div class="collapsible"><div class="head">Segment white matter hyperintensities</div><div class="body form">
  <span>FLAIR volume:</span><span class="combo">MS_FLAIR</span>
  <span>Output segmentation:</span><span class="combo">{html.escape(summary['node'])}</span></div></div>
 <div><span class="button wide" style="display:inline-block;width:300px">Segment lesions</span>
      <span class="button disabled">Cancel</span></div>
 <div class="result">{html.escape(panel.result_line(summary))}</div>
 <div><span class="button">Show 3D ▾</span> <span class="button">Edit in Segment Editor</span></div>
 <table style="margin-top:6px"><tr><th>Lesion</th><th>Volume (ml)</th><th>Slices</th></tr>{rows}</table>
 <div class="caption">{more} more rows; click a row to jump the slice views to that lesion</div>
 <div class="collapsible collapsed"><div class="head">Log</div><div class="body"></div></div>
 <div class="collapsible"><div class="head">Advanced</div><div class="body form">
  <span>Device:</span><span class="combo">auto</span><span>Backend:</span><span class="combo">auto</span>
  <span>Threshold:</span><span>{summary['threshold']:.2f} <input type="range" min="5" max="95" value="{round(100 * summary['threshold'])}" style="width:200px"></span>
  <span>Thin slices (3D FLAIR):</span><span class="combo">every slice</span>
 </div></div>
 <div class="caption">Advanced is collapsed by default (shown open here).</div>
</div>"""


def training_panel() -> str:
    estimate = panel.training_estimate(200, 100, 16, "cpu")
    return f"""
<div class="panel steps"><div class="title">DeepWML Training</div>
 <div class="collapsible"><div class="head">Data</div><div class="body form">
  <span>Manifest or folder:</span><span class="combo">/data/wmh/manifest.csv</span>
  <span>Work folder:</span><span class="combo">/data/wmh/work</span></div></div>
 <div class="collapsible"><div class="head">1. Consensus check</div><div class="body">
  <span class="button">Check inter-rater agreement</span>
  <div style="margin-top:4px">Cases to re-label (Dice between raters below 0.85):</div>
  <table><tr><th>case</th><th>dice</th></tr><tr><td>case0007</td><td>0.71</td></tr></table>
  <div class="caption">(illustrative paths and values in this panel)</div></div></div>
 <div class="collapsible"><div class="head">2. Train or fine-tune</div><div class="body form">
  <span>Epochs:</span><span class="combo">200</span><span>Batches per epoch:</span><span class="combo">100</span>
  <span>U-Net width:</span><span class="combo">16</span><span></span><span>☐ Fine-tune the model in use</span>
  <span></span><span class="caption">{html.escape(estimate)}</span>
  <span></span><span class="button">Train / resume</span></div></div>
 <div class="collapsible"><div class="head">3. Evaluate</div><div class="body">
  <span class="button">Evaluate</span> <span class="button disabled">Open report</span>
  <div class="caption">Evaluates the bundled model until a model is trained.</div></div></div>
 <div class="collapsible"><div class="head">4. Use in DeepWML</div><div class="body">
  <div>{html.escape(panel.model_line(None))}</div>
  <span class="button disabled">Use trained model in DeepWML</span>
  <span class="button disabled">Revert to bundled model</span></div></div>
 <div>idle <span class="button disabled" style="float:right">Cancel</span></div>
</div>"""


def main(out: Path = Path(__file__).with_name("DeepWML-panel-mock.png")) -> None:
    page = f"<html><head><meta charset='utf-8'><style>{CSS}</style></head><body><div class='row'>" \
           f"{deepwml_panel(real_numbers())}{training_panel()}</div></body></html>"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "mock.html"
        source.write_text(page, encoding="utf-8")
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={out}", "--window-size=930,790", source.as_uri()], check=True,
                       capture_output=True)
    print(out)


if __name__ == "__main__":
    main()
