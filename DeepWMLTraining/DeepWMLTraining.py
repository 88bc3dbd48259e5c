"""DeepWMLTraining: consensus check, training and evaluation from inside 3D Slicer.

Each long job runs the ``deepwml`` command line in a background process, so Slicer stays
responsive, the job can be cancelled, and exactly the same code runs in batch and CI. Qt is
used only inside :class:`DeepWMLTrainingWidget`.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class DeepWMLTraining(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "DeepWML Training"
        parent.categories = ["Segmentation"]
        parent.dependencies = []
        parent.contributors = ["DeepWML team"]
        parent.helpText = (
            "Check inter-rater agreement (cases below Dice 0.85 go back for re-labelling), train a "
            "DeepWML model on your own labelled FLAIR scans, evaluate it as the paper does, and make "
            "it the model the DeepWML module uses.")
        parent.acknowledgementText = "Implements the DeepWML method's training and evaluation."


def python_executable() -> str:
    """Slicer's own Python launcher inside the app; this interpreter elsewhere."""
    return shutil.which("PythonSlicer") or sys.executable


def engine_path() -> str:
    """Folder holding the ``deepwml`` package (the DeepWML module's folder)."""
    import deepwml

    return str(Path(deepwml.__file__).resolve().parent.parent)


class BackgroundJob:
    """A ``deepwml`` command running in its own process; log lines are read as they come."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([engine_path(), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen([python_executable(), "-m", "deepwml.cli", *args],
                                        stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self._log.close()
        return code

    def cancel(self) -> None:
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()

    def log_text(self) -> str:
        """The log so far; progress bars' carriage returns become new lines."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return text.replace("\r", "\n")


class DeepWMLTrainingLogic(ScriptedLoadableModuleLogic):
    """Starts jobs and reads their results; no GUI."""

    def runConsensus(self, manifest: str, outDir: str, minDice: float = 0.85) -> BackgroundJob:
        return BackgroundJob(["consensus", manifest, "-o", outDir, "--min-dice", str(minDice),
                              "--overwrite", "-q"], Path(outDir) / "consensus.log")

    def startTraining(self, manifest: str, outDir: str, epochs: int = 200, baseChannels: int = 64,
                      extraArgs: list[str] | None = None) -> BackgroundJob:
        """Resumes automatically when ``outDir`` already holds a run with the same settings."""
        return BackgroundJob(["train", manifest, "-o", outDir, "--epochs", str(epochs),
                              "--base-channels", str(baseChannels), *(extraArgs or [])],
                             Path(outDir) / "training.log")

    def runEvaluation(self, manifest: str, outDir: str, modelPath: str | None = None,
                      extraArgs: list[str] | None = None) -> BackgroundJob:
        args = ["evaluate", manifest, "-o", outDir, "--overwrite", "-q", *(extraArgs or [])]
        if modelPath:
            args += ["--model", modelPath]
        return BackgroundJob(args, Path(outDir) / "evaluation.log")

    @staticmethod
    def readTable(path: str) -> list[dict]:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    @staticmethod
    def useModel(modelDir: str | None) -> None:
        """Make ``modelDir`` the model the DeepWML module uses (None: the bundled one)."""
        from deepwml.user_settings import set_preferred_model

        set_preferred_model(modelDir)


class DeepWMLTrainingWidget(ScriptedLoadableModuleWidget):
    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepWMLTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.logic = DeepWMLTrainingLogic()
        self.job = None
        self.timer = qt.QTimer()
        self.timer.setInterval(1000)
        self.timer.connect("timeout()", self.onPoll)
        self.ui.consensusButton.connect("clicked(bool)", self.onConsensus)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluate)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.useModelButton.connect("clicked(bool)", self.onUseModel)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)
        self._report = None
        self._qt = qt

    def _paths(self) -> tuple[str, str]:
        return self.ui.manifestPathLineEdit.currentPath, self.ui.outputPathLineEdit.currentPath

    def _start(self, job: BackgroundJob, report: str | None) -> None:
        self.job, self._report = job, report
        self.ui.cancelButton.enabled = True
        self.ui.statusLabel.text = "running…"
        self.timer.start()

    def onConsensus(self) -> None:
        manifest, out = self._paths()
        self._start(self.logic.runConsensus(manifest, os.path.join(out, "consensus")),
                    os.path.join(out, "consensus", "consensus.html"))

    def onTrain(self) -> None:
        manifest, out = self._paths()
        self._start(self.logic.startTraining(manifest, os.path.join(out, "run"), self.ui.epochsSpinBox.value,
                                             self.ui.widthSpinBox.value), None)

    def onEvaluate(self) -> None:
        manifest, out = self._paths()
        model = os.path.join(out, "run", "model")
        self._start(self.logic.runEvaluation(manifest, os.path.join(out, "evaluation"),
                                             model if os.path.exists(model) else None),
                    os.path.join(out, "evaluation", "report.html"))

    def onPoll(self) -> None:
        if self.job is None:
            return
        self.ui.logTextEdit.setPlainText(self.job.log_text()[-20000:])
        self.ui.logTextEdit.moveCursor(self._qt.QTextCursor.End)
        if not self.job.running():
            self.timer.stop()
            code = self.job.wait()
            self.ui.cancelButton.enabled = False
            self.ui.statusLabel.text = "finished" if code == 0 else f"failed (exit code {code}); see the log"
            self.ui.openReportButton.enabled = bool(self._report and os.path.exists(self._report))
            table = os.path.join(os.path.dirname(self._report or ""), "table2.csv")
            if os.path.exists(table):
                rows = self.logic.readTable(table)
                self.ui.resultsTable.setRowCount(len(rows))
                self.ui.resultsTable.setColumnCount(len(rows[0]) if rows else 0)
                if rows:
                    self.ui.resultsTable.setHorizontalHeaderLabels(list(rows[0]))
                for r, row in enumerate(rows):
                    for c, value in enumerate(row.values()):
                        self.ui.resultsTable.setItem(r, c, self._qt.QTableWidgetItem(value))

    def onCancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.ui.statusLabel.text = "cancelled (training resumes from its last checkpoint when started again)"

    def onOpenReport(self) -> None:
        if self._report:
            self._qt.QDesktopServices.openUrl(self._qt.QUrl.fromLocalFile(self._report))

    def onUseModel(self) -> None:
        model = os.path.join(self._paths()[1], "run", "model")
        with slicer.util.tryWithErrorDisplay("This model cannot be used.", waitCursor=True):
            self.logic.useModel(model)
            self.ui.statusLabel.text = f"DeepWML now uses {model}"


class DeepWMLTrainingTest(ScriptedLoadableModuleTest):
    """Consensus, a two-epoch training run in the background, evaluation, and model choice.

    In the app it generates a small phantom set; CI hands it one (``manifestPath``).
    """

    manifestPath: str | None = None
    workDir: str | None = None

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        self.setUp()
        self.test_ConsensusTrainEvaluate()

    def test_ConsensusTrainEvaluate(self) -> None:
        import tempfile

        from deepwml.model_files import load_model
        from deepwml.user_settings import preferred_model

        work = Path(self.workDir or tempfile.mkdtemp())
        manifest = self.manifestPath
        if manifest is None:
            from deepwml.phantom.generator import generate_dataset

            self.delayDisplay("Generating 9 phantom cases")
            manifest = str(generate_dataset(work / "phantoms", 9, seed=3, progress=False))
        logic = DeepWMLTrainingLogic()

        self.delayDisplay("Inter-rater consensus")
        job = logic.runConsensus(manifest, str(work / "consensus"))
        self.assertEqual(job.wait(300), 0, job.log_text())
        rows = logic.readTable(str(work / "consensus" / "consensus.csv"))
        relabel = {r["case"] for r in logic.readTable(str(work / "consensus" / "relabel.csv"))}
        self.assertEqual(relabel, {r["case"] for r in rows if float(r["dice"]) < 0.85})

        self.delayDisplay("Training two epochs in a background process")
        job = logic.startTraining(manifest, str(work / "run"), epochs=2, baseChannels=4,
                                  extraArgs=["--steps-per-epoch", "2", "--crop", "64", "--batch-size", "2",
                                             "--val-slices", "8", "-q"])
        self.assertEqual(job.wait(600), 0, job.log_text())
        model = work / "run" / "model"
        load_model(model)

        self.delayDisplay("Evaluating")
        job = logic.runEvaluation(manifest, str(work / "evaluation"), str(model),
                                  extraArgs=["--split", "all", "--max-cases", "2", "--device", "cpu"])
        self.assertEqual(job.wait(600), 0, job.log_text())
        self.assertTrue((work / "evaluation" / "report.html").exists())

        self.delayDisplay("Choosing the trained model for DeepWML")
        os.environ["DEEPWML_SETTINGS"] = str(work / "settings.json")
        try:
            logic.useModel(str(model))
            self.assertEqual(preferred_model(), str(model.resolve()))
            logic.useModel(None)
            self.assertIsNone(preferred_model())
        finally:
            del os.environ["DEEPWML_SETTINGS"]
        self.delayDisplay("DeepWMLTraining self-test passed")
