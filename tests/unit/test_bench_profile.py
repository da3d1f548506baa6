"""The bench's profiler command line: what --profile and --gil ask py-spy for."""

from __future__ import annotations

from pathlib import Path

from scripts.benchlib.__main__ import parse
from scripts.benchlib.stack import spy_args


def test_gil_profiles_sample_only_threads_holding_the_gil() -> None:
    out = Path("/tmp/x.txt")
    plain = spy_args("py-spy", 42, out, 3.4, gil=False)
    gil = spy_args("py-spy", 42, out, 3.4, gil=True)
    assert plain[:4] == ["py-spy", "record", "--pid", "42"]
    assert "--gil" not in plain and "--nonblocking" in plain
    assert gil == [*plain, "--gil"]
    assert plain[plain.index("--duration") + 1] == "3"
    assert plain[plain.index("--output") + 1] == str(out)


def test_the_gil_option_reaches_the_profiler() -> None:
    assert parse(["--profile", "--gil"]).gil is True
    assert parse(["--profile"]).gil is False
