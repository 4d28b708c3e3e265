"""Progress bars in an executed notebook: one final line on standard output for a loop a person
waited for, nothing for a quick one, nothing on stderr."""

import io
import sys

from molkit import _progress


def test_headless_bars_print_one_line_to_stdout_only_for_slow_loops(monkeypatch, capsys):
    monkeypatch.setenv(_progress.HEADLESS_ENV, "1")
    for _ in _progress.tqdm(range(3), desc="quick"):
        pass
    bar = _progress.tqdm(total=2, desc="slow")
    bar.update(2)
    bar.start_t -= _progress.LINE_SECONDS + 1  # as if it had run for a while
    bar.close()
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("slow: 100%") and "2/2" in lines[0]
    buffer = io.StringIO()
    bar = _progress.tqdm(total=1, desc="to a file", file=buffer)
    bar.update(1)
    bar.start_t -= 10
    bar.close()
    assert buffer.getvalue().startswith("to a file: 100%") and sys.stdout is not buffer
