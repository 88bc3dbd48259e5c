"""Background processes for long jobs (inference, consensus, training, evaluation).

Like SlicerMONAIAuto3DSeg: the job runs in its own process so Slicer stays responsive; its
output is read line by line on a thread and handed to the GUI from a timer; cancel ends the
whole process tree (Slicer's ``PythonSlicer`` is a launcher whose child runs the work, so
ending only the launcher would leave the job running). A cancelled job reports "cancelled",
never "failed", whatever exit code the killed process leaves.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"


def python_command() -> List[str]:
    """Slicer's Python launcher inside the app (as the peers do); this interpreter elsewhere."""
    try:
        import slicer

        in_app = hasattr(slicer, "app")
    except ImportError:
        in_app = False
    launcher = shutil.which("PythonSlicer") if in_app else None
    return [launcher or sys.executable]


def module_dir() -> str:
    """The DeepWML module folder: holds the ``deepwml`` engine and ``DeepWMLLib``."""
    return str(Path(__file__).resolve().parent.parent)


def job_environment(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [module_dir(), env.get("PYTHONPATH", "")] if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its parent counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    return True


def descendants(pid: int) -> List[int]:
    """Process ids below ``pid`` (psutil when present, /proc on Linux otherwise)."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # the process is already gone
        return []
    children: Dict[int, List[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_process_tree(pid: int, grace_s: float = 5.0) -> None:
    """End ``pid`` and everything it started: politely first, then by force."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False)
        return
    tree = [pid, *descendants(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # the job leads its own process group (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass
        for p in tree:  # descendants that left the group
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.05)
        if not any(_alive(p) for p in tree):
            return


class BackgroundJob:
    """A command running in its own process group; output lines are collected as they come."""

    def __init__(self, command: List[str], log_path: Optional[Path] = None,
                 env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None) -> None:
        self.command = list(command)
        self.log_path = Path(log_path) if log_path else None
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8") if self.log_path else None
        self._lines: "queue.Queue[str]" = queue.Queue()
        self._all: List[str] = []
        self._cancelled = False
        self.started = time.monotonic()
        kwargs = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {
            "start_new_session": True}
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env or job_environment(), cwd=cwd,
                                        text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            for part in line.replace("\r", "\n").splitlines():  # progress bars' carriage returns
                if part.strip():
                    self._lines.put(part)
                    if self._log and not self._log.closed:
                        self._log.write(part + "\n")
                        self._log.flush()
        self.process.stdout.close()

    # --- state ----------------------------------------------------------------------------
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def status(self) -> str:
        if self._cancelled:
            return CANCELLED
        code = self.process.poll()
        if code is None:
            return RUNNING
        return FINISHED if code == 0 else FAILED

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll()

    def new_lines(self) -> List[str]:
        """Lines printed since the last call (non-blocking; call from a GUI timer)."""
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                break
        self._all.extend(lines)
        return lines

    def log_text(self) -> str:
        self.new_lines()
        return "\n".join(self._all)

    def wait(self, timeout: Optional[float] = None) -> str:
        """Wait for the end; return :attr:`status`."""
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is not None:
                self._reader.join(5)
                self._close_log()
        return self.status

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the job and every process it started; :attr:`status` becomes "cancelled"."""
        if self.process.poll() is None:
            self._cancelled = True
            kill_process_tree(self.process.pid, grace_s)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
        self._close_log()

    def _close_log(self) -> None:
        if self._log and not self._log.closed:
            self._log.close()

    def __del__(self) -> None:  # a job never outlives its owner
        try:
            if self.process.poll() is None:
                self.cancel(grace_s=1.0)
        except Exception:
            pass
