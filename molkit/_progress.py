"""Progress bars that suit where the code runs.

- In Jupyter (ipywidgets installed): tqdm's notebook widget, one bar that updates in place.
- In a terminal: tqdm's text bar.
- Headless (``molkit run`` sets ``MOLKIT_HEADLESS=1`` for the papermill kernel; also when stderr
  is not a terminal outside Jupyter): no updates while running and, for a loop that took at least
  `LINE_SECONDS`, one final line on standard output when it closes (``desc: 100%|...| n/n
  [elapsed, rate]``), so an executed notebook keeps one line per loop a person waited for instead
  of dozens of redraws on stderr. Bars made with ``leave=False`` print nothing there.

Use :func:`tqdm` exactly like ``tqdm.auto.tqdm``. :func:`quiet_library_logs` keeps libraries'
debug logging out of notebooks.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import std

HEADLESS_ENV = "MOLKIT_HEADLESS"
#: A headless bar that closes sooner than this prints nothing (a person did not wait for it).
LINE_SECONDS = 2.0


class LineTqdm(std.tqdm):
    """A tqdm that writes nothing while it runs and one line when it closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # no refresh at start or at close (the delay never passes), none while running (mininterval)
        kwargs.update(mininterval=float("inf"), maxinterval=float("inf"), delay=1e9)
        kwargs.setdefault("file", sys.stdout)
        super().__init__(*args, **kwargs)

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> bool:
        return False

    def close(self) -> None:
        if not getattr(self, "disable", True):
            leave = (abs(getattr(self, "pos", 0)) == 0) if self.leave is None else self.leave
            waited = self._time() - self.start_t >= LINE_SECONDS
            if leave and waited:
                line = self.format_meter(**self.format_dict)
                try:
                    self.fp.write(line.strip("\r") + "\n")
                    self.fp.flush()
                except (ValueError, OSError):  # the stream was closed
                    pass
        super().close()


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def headless() -> bool:
    """Whether no person watches the bars: ``$MOLKIT_HEADLESS`` says so, or stderr is no terminal
    outside Jupyter."""
    value = os.environ.get(HEADLESS_ENV, "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    if _in_jupyter():
        return False
    return not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def tqdm(*args: Any, **kwargs: Any) -> std.tqdm:
    """A progress bar: `LineTqdm` when `headless`, else ``tqdm.auto.tqdm`` (a widget in Jupyter)."""
    if headless():
        return LineTqdm(*args, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(*args, **kwargs)


#: Libraries that log below WARNING into notebooks (bm25s sets its own logger to DEBUG on import).
NOISY_LOGGERS = ("bm25s", "absl", "numexpr", "matplotlib", "PIL", "urllib3", "filelock", "fsspec")


def quiet_library_logs(names: tuple[str, ...] = NOISY_LOGGERS) -> None:
    """Raise these libraries' loggers to WARNING (call again after importing one that resets it)."""
    import logging

    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
