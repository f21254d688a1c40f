"""A quiet console for `sweep.run`: the plan, trial events, epochs and summary on the terminal; Ray's
asides in a log file beside the results.

Ray prints some messages to the driver whatever `log_to_driver` says: the raylet's warnings (for example
"N PYTHON worker processes have been started ... 4x the maximum expected startup concurrency", expected
when every trial is a driver plus a worker on a small machine) come through a channel the driver prints
unconditionally. `QuietStream` sends every line that carries Ray's `(raylet)` / `(name pid=...)` prefix to
the log instead; everything else, tracebacks included, reaches the terminal unchanged.
"""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

RAY_ASIDE = re.compile(r"^(?:\x1b\[[0-9;]*m)*\((?:raylet|autoscaler|[A-Za-z_][\w.:]* pid=\d+|pid=\d+)")


class QuietStream(io.TextIOBase):
    """Wraps a text stream line by line: Ray's aside lines go to `log` (held in memory until one is set)."""

    def __init__(self, stream, name: str = "stdout"):
        self.stream = stream
        self.name = name
        self.log = None
        self.held: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._route(line + "\n")
        return len(text)

    def _route(self, line: str) -> None:
        if not RAY_ASIDE.match(line):
            self.stream.write(line)
        elif self.log is not None:
            self.log.write(line)
            self.log.flush()
        else:
            self.held.append(line)

    def flush(self) -> None:
        if self._partial:  # a line without its newline yet (input prompts, progress): show it as it is
            self._route(self._partial)
            self._partial = ""
        self.stream.flush()

    def attach(self, log) -> None:
        self.log = log
        log.writelines(self.held)
        log.flush()
        self.held = []

    def __reduce__(self):
        # Tune pickles objects that hold a reference to sys.stdout (its experiment state, callbacks): they
        # get the unpickling process's own stream, as cloudpickle does for the plain sys.stdout.
        return _std_stream, (self.name,)

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")


def _std_stream(name: str):
    return getattr(sys, name)


def quiet() -> None:
    """Route Ray's aside lines off the terminal (idempotent)."""
    if not isinstance(sys.stdout, QuietStream):
        sys.stdout = QuietStream(sys.stdout, "stdout")
    if not isinstance(sys.stderr, QuietStream):
        sys.stderr = QuietStream(sys.stderr, "stderr")


def log_to(path: Path) -> Path | None:
    """Write the held and all later aside lines to `path` (appending: a resume adds to the same file)."""
    streams = [s for s in (sys.stdout, sys.stderr) if isinstance(s, QuietStream)]
    if not streams:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the rest of the run)
    for s in streams:
        s.attach(log)
    return path
