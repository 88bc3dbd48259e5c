"""DeepWMLTraining: consensus check, training and evaluation from inside 3D Slicer, in four steps.

1 consensus → 2 train (or fine-tune the model in use) → 3 evaluate → 4 use the model in DeepWML.
Each long job runs the ``deepwml`` command line in a background process (``DeepWMLLib.jobs``),
so Slicer stays responsive, Cancel ends the whole process tree, and exactly the same code runs
in batch and CI. Which buttons are live comes from ``DeepWMLLib.panel.training_steps``. Qt is
used only inside :class:`DeepWMLTrainingWidget`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Optional

import slicer
from DeepWMLLib import dependencies, panel
from DeepWMLLib.jobs import CANCELLED, FINISHED, RUNNING, BackgroundJob, job_environment, python_command
from DeepWMLLib.settings import MemoryStore, ModelChoice
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class DeepWMLTraining(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "DeepWML Training"
        parent.categories = ["Segmentation"]
        parent.dependencies = ["DeepWML"]  # the engine and DeepWMLLib ship with DeepWML
        parent.contributors = ["DeepWML team"]
        parent.helpText = (
            "Four steps: 1 check inter-rater agreement (cases below Dice 0.85 go back for re-labelling), "
            "2 train a DeepWML model on your own labelled FLAIR scans (or fine-tune the model in use), "
            "3 evaluate it as the paper does, 4 make it the model the DeepWML module uses (or go back "
            "to the bundled model).")
        parent.acknowledgementText = "Implements the DeepWML method's training and evaluation."


def cli(args: List[str]) -> List[str]:
    """The engine's command line as a background-process command."""
    return [*python_command(), "-m", "deepwml.cli", *args]


class DeepWMLTrainingLogic(ScriptedLoadableModuleLogic):
    """Starts jobs and reads their results; no GUI."""

    @staticmethod
    def _checked(outDir: str) -> str:
        problem = panel.check_work_dir(os.path.dirname(outDir.rstrip("/\\")) if outDir else "")
        if problem:
            raise ValueError(problem)
        return outDir

    def runConsensus(self, manifest: str, outDir: str, minDice: float = 0.85) -> BackgroundJob:
        outDir = self._checked(outDir)
        return BackgroundJob(cli(["consensus", manifest, "-o", outDir, "--min-dice", str(minDice), "--overwrite",
                                  "-q"]), Path(outDir) / "consensus.log", env=job_environment())

    def startTraining(self, manifest: str, outDir: str, epochs: int = 200, baseChannels: int = 64,
                      extraArgs: Optional[List[str]] = None, initModel: Optional[str] = None,
                      chooseThreshold: bool = False) -> BackgroundJob:
        """Resumes when ``outDir`` already holds a run with the same settings; ``initModel``
        fine-tunes from that model's weights instead of starting from random ones, and the new model
        keeps that model's threshold and contrast floor (the engine's ``train --init``);
        ``chooseThreshold``: then its own threshold is chosen on the run's validation cases when there are
        at least 10 with lesions (``train --choose-threshold``; the log shows the sweep and why)."""
        outDir = self._checked(outDir)
        args = ["train", manifest, "-o", outDir, "--epochs", str(epochs), "--base-channels", str(baseChannels)]
        if initModel:
            args += ["--init", initModel]
        if chooseThreshold:
            args.append("--choose-threshold")
        return BackgroundJob(cli([*args, *(extraArgs or [])]), Path(outDir) / "training.log", env=job_environment())

    def runEvaluation(self, manifest: str, outDir: str, modelPath: Optional[str] = None,
                      extraArgs: Optional[List[str]] = None) -> BackgroundJob:
        outDir = self._checked(outDir)
        args = ["evaluate", manifest, "-o", outDir, "--overwrite", "-q", *(extraArgs or [])]
        if modelPath:
            args += ["--model", modelPath]
        return BackgroundJob(cli(args), Path(outDir) / "evaluation.log", env=job_environment())

    @staticmethod
    def readTable(path: str) -> List[dict]:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    @staticmethod
    def useModel(modelDir: Optional[str], store=None) -> Optional[str]:
        """Make ``modelDir`` the model DeepWML uses (verified first); None: the bundled one.
        Kept in Slicer's settings (``store``: QSettings-like; the application's by default)."""
        choice = ModelChoice(store)
        if modelDir is None:
            choice.revert()
            return None
        return choice.use(modelDir)


class DeepWMLTrainingWidget(ScriptedLoadableModuleWidget):
    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        self._qt = qt
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepWMLTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.logic = DeepWMLTrainingLogic()
        self.job: Optional[BackgroundJob] = None
        self._report: Optional[str] = None
        self._table: Optional[str] = None
        self._status = "idle"
        self.timer = qt.QTimer()
        self.timer.setInterval(1000)
        self.timer.connect("timeout()", self.onPoll)
        self.ui.consensusButton.connect("clicked(bool)", self.onConsensus)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluate)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.useModelButton.connect("clicked(bool)", self.onUseModel)
        self.ui.revertModelButton.connect("clicked(bool)", self.onRevertModel)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)
        for widget in (self.ui.manifestPathLineEdit, self.ui.outputPathLineEdit):
            widget.connect("currentPathChanged(QString)", self.updateSteps)
        for spin in (self.ui.epochsSpinBox, self.ui.widthSpinBox, self.ui.stepsSpinBox):
            spin.connect("valueChanged(int)", self.updateSteps)
        self.updateSteps()

    def cleanup(self) -> None:
        """Slicer is closing or the module is reloaded: no job may outlive it."""
        self.timer.stop()
        if self.job is not None and self.job.running():
            self.job.cancel(grace_s=2.0)

    def _paths(self):
        return self.ui.manifestPathLineEdit.currentPath, self.ui.outputPathLineEdit.currentPath

    def _device(self) -> str:
        if dependencies.missing("torch"):
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def updateSteps(self, *_) -> None:
        manifest, work = self._paths()
        running = self.job is not None and self.job.running()
        steps = panel.training_steps(manifest, work, running, ModelChoice().current())
        for name, button in (("consensus", self.ui.consensusButton), ("train", self.ui.trainButton),
                             ("evaluate", self.ui.evaluateButton), ("use", self.ui.useModelButton),
                             ("revert", self.ui.revertModelButton), ("cancel", self.ui.cancelButton)):
            enabled, why = steps[name]
            button.enabled = enabled
            button.toolTip = why
        self.ui.statusLabel.text = self._status
        self.ui.estimateLabel.text = panel.training_estimate(
            self.ui.epochsSpinBox.value, self.ui.stepsSpinBox.value, self.ui.widthSpinBox.value, self._device())
        self.ui.modelInUseLabel.text = panel.model_line(ModelChoice().current())
        relabel = panel.work_paths(work)["relabel"] if not panel.check_work_dir(work) else None
        self.showTable(self.ui.relabelTable, str(relabel) if relabel and relabel.exists() else None)

    def showTable(self, table, path: Optional[str]) -> None:
        rows = self.logic.readTable(path) if path else []
        table.setRowCount(len(rows))
        table.setColumnCount(len(rows[0]) if rows else 0)
        if rows:
            table.setHorizontalHeaderLabels(list(rows[0]))
        for r, row in enumerate(rows):
            for c, value in enumerate(row.values()):
                table.setItem(r, c, self._qt.QTableWidgetItem(value))

    def _start(self, start, report: Optional[str], table: Optional[str]) -> None:
        with slicer.util.tryWithErrorDisplay("The job could not start.", waitCursor=True):
            dependencies.ensure_in_slicer("train", ask=True, log=self.ui.logTextEdit.appendPlainText)
            self.job = start()
            self._report, self._table = report, table
            self._status = f"running on {self._device()}…"
            self.ui.logTextEdit.clear()
            self.timer.start()
        self.updateSteps()

    def onConsensus(self) -> None:
        manifest, work = self._paths()
        paths = panel.work_paths(work)
        self._start(lambda: self.logic.runConsensus(manifest, str(paths["consensus"])),
                    str(paths["consensus"] / "consensus.html"), None)

    def onTrain(self) -> None:
        manifest, work = self._paths()
        paths = panel.work_paths(work)
        source = str(paths["consensus_manifest"]) if paths["consensus_manifest"].exists() else manifest
        init = None
        if self.ui.fineTuneCheckBox.checked:
            init = ModelChoice().current() or str(panel.BUNDLED_MODEL_DIR)
        extra = ["--steps-per-epoch", str(self.ui.stepsSpinBox.value)] if self.ui.stepsSpinBox.value else []
        bf16 = self.ui.bf16CheckBox.checked

        def start() -> BackgroundJob:
            # after the dependency check of _start: asking the CPU about bf16 imports PyTorch
            from deepwml.torch_backend import cpu_has_fast_bf16

            precision, note = panel.training_precision_args(bf16, self._device(), cpu_has_fast_bf16)
            job = self.logic.startTraining(source, str(paths["run"]), self.ui.epochsSpinBox.value,
                                           self.ui.widthSpinBox.value, extra + precision, init,
                                           self.ui.chooseThresholdCheckBox.checked)
            if note:
                self.ui.logTextEdit.appendPlainText(note)
            return job

        self._start(start, None, None)

    def onEvaluate(self) -> None:
        manifest, work = self._paths()
        paths = panel.work_paths(work)
        model = str(paths["model"]) if (paths["model"] / "model.json").exists() else None
        self._start(lambda: self.logic.runEvaluation(manifest, str(paths["evaluation"]), model),
                    str(paths["report"]), str(paths["evaluation"] / "table2.csv"))

    def onPoll(self) -> None:
        if self.job is None:
            return
        if self.job.new_lines():
            self.ui.logTextEdit.setPlainText(self.job.log_text()[-20000:])
            self.ui.logTextEdit.moveCursor(self._qt.QTextCursor.End)
        status = self.job.status
        if status == RUNNING:
            return
        self.timer.stop()
        if status == FINISHED:
            self._status = "finished"
        elif status == CANCELLED:
            self._status = "cancelled (training resumes from its last checkpoint when started again)"
        else:
            self._status = f"failed (exit code {self.job.returncode}); see the log"
        self.job.wait(5)
        self.ui.openReportButton.enabled = bool(self._report and os.path.exists(self._report))
        if self._table and os.path.exists(self._table):
            self.showTable(self.ui.resultsTable, self._table)
        self.updateSteps()

    def onCancel(self) -> None:
        if self.job is not None and self.job.running():
            self.job.cancel()  # every process the job started; status becomes "cancelled"
        self.onPoll()

    def onOpenReport(self) -> None:
        if self._report:
            self._qt.QDesktopServices.openUrl(self._qt.QUrl.fromLocalFile(self._report))

    def onUseModel(self) -> None:
        model = str(panel.work_paths(self._paths()[1])["model"])
        with slicer.util.tryWithErrorDisplay("This model cannot be used.", waitCursor=True):
            self.logic.useModel(model)
            self._status = f"DeepWML now uses {model}"
        self.updateSteps()

    def onRevertModel(self) -> None:
        self.logic.useModel(None)
        self._status = "DeepWML uses the bundled model again"
        self.updateSteps()


class DeepWMLTrainingTest(ScriptedLoadableModuleTest):
    """Consensus, a two-epoch training run in the background, cancel, evaluation, model choice.

    In the app it generates a small phantom set; CI hands it one (``manifestPath``).
    """

    manifestPath: Optional[str] = None
    workDir: Optional[str] = None

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        self.setUp()
        self.test_ConsensusTrainEvaluate()

    def test_ConsensusTrainEvaluate(self) -> None:
        import tempfile

        from deepwml.model_files import load_model

        work = Path(self.workDir or tempfile.mkdtemp())
        manifest = self.manifestPath
        if manifest is None:
            if dependencies.missing("phantoms"):
                try:  # as the peers do: tests install what they need, or say why they cannot run
                    dependencies.ensure_in_slicer("phantoms", ask=False)
                except Exception as err:
                    self.skipTest(f"phantom packages missing and not installable: {err}")
            from deepwml.phantom.generator import generate_dataset

            self.delayDisplay("Generating 9 phantom cases")
            manifest = str(generate_dataset(work / "phantoms", 9, seed=3, progress=False))
        logic = DeepWMLTrainingLogic()
        with self.assertRaises(ValueError):  # never Slicer's current directory
            logic.runConsensus(manifest, "consensus")

        self.delayDisplay("Inter-rater consensus")
        job = logic.runConsensus(manifest, str(work / "consensus"))
        self.assertEqual(job.wait(300), FINISHED, job.log_text())
        rows = logic.readTable(str(work / "consensus" / "consensus.csv"))
        relabel = {r["case"] for r in logic.readTable(str(work / "consensus" / "relabel.csv"))}
        self.assertEqual(relabel, {r["case"] for r in rows if float(r["dice"]) < 0.85})

        self.delayDisplay("Training two epochs in a background process, then choosing the threshold")
        args = ["--steps-per-epoch", "2", "--crop", "64", "--batch-size", "2", "--val-slices", "8", "-q"]
        job = logic.startTraining(manifest, str(work / "run"), epochs=2, baseChannels=4, extraArgs=args,
                                  chooseThreshold=True)
        self.assertEqual(job.wait(600), FINISHED, job.log_text())
        model = work / "run" / "model"
        load_model(model)
        # nine phantoms leave too few validation cases: the log says so and the model keeps its threshold
        self.assertIn("fewer than 10", job.log_text())

        self.delayDisplay("Cancelling a training run ends it (status cancelled, not failed)")
        job = logic.startTraining(manifest, str(work / "run-cancelled"), epochs=50, baseChannels=4, extraArgs=args)
        job.cancel()
        self.assertEqual(job.status, CANCELLED)
        self.assertFalse(job.running())

        self.delayDisplay("Evaluating")
        job = logic.runEvaluation(manifest, str(work / "evaluation"), str(model),
                                  extraArgs=["--split", "all", "--max-cases", "2", "--device", "cpu"])
        self.assertEqual(job.wait(600), FINISHED, job.log_text())
        self.assertTrue((work / "evaluation" / "report.html").exists())

        self.delayDisplay("Choosing the trained model for DeepWML, then the bundled one again")
        store = MemoryStore()
        logic.useModel(str(model), store)
        self.assertEqual(ModelChoice(store).current(), str(model.resolve()))
        steps = panel.training_steps(manifest, str(work), False, ModelChoice(store).current())
        self.assertTrue(steps["use"][0] and steps["revert"][0])
        logic.useModel(None, store)
        self.assertIsNone(ModelChoice(store).current())
        self.delayDisplay("DeepWMLTraining self-test passed")

