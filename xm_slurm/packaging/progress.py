"""Progress of image work on stderr: a rich live display on a terminal, plain lines otherwise.

Either way there is one line when an image's work starts and one when it ends, with its time.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

_PREFIX = "xm-slurm:"


class ImageTask:
    """One image's work as shown to the user."""

    def __init__(self, reporter: ProgressReporter, label: str, task_id: TaskID | None) -> None:
        self._reporter = reporter
        self.label = label
        self._task_id = task_id
        self._started = time.monotonic()

    def step(self, what: str) -> None:
        """Say what is happening now (e.g. 'pushing')."""
        self._reporter._update(self, f"{what}")

    def line(self, text: str) -> None:
        """The latest line of tool output, shown on a terminal only."""
        if text.strip():
            self._reporter._update(self, text.strip()[:100])

    def finish(self, outcome: str) -> None:
        self._reporter._finish(self, f"{outcome} in {time.monotonic() - self._started:.1f} s")


class ProgressReporter:
    """Use as a context manager around a batch of image work."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty() if live is None else live
        self._console = Console(file=self._stream, highlight=False)
        self._progress: Progress | None = None

    def __enter__(self) -> ProgressReporter:
        if self._live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def start(self, label: str, what: str) -> ImageTask:
        self._say(f"{_PREFIX} {what} {label}")
        task_id = None
        if self._progress is not None:
            task_id = self._progress.add_task(escape(f"{label}: {what}"), total=None)
        return ImageTask(self, label, task_id)

    def note(self, text: str) -> None:
        """A one-line remark that is not about a running task."""
        self._say(f"{_PREFIX} {text}")

    def _update(self, task: ImageTask, text: str) -> None:
        if self._progress is not None and task._task_id is not None:
            self._progress.update(task._task_id, description=escape(f"{task.label}: {text}"))

    def _finish(self, task: ImageTask, text: str) -> None:
        if self._progress is not None and task._task_id is not None:
            self._progress.remove_task(task._task_id)
        self._say(f"{_PREFIX} {task.label}: {text}")

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(escape(text))
        else:
            print(text, file=self._stream, flush=True)
