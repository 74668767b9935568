"""The demo on 20 Newsgroups, with fake backends (fast); the real models run in test_models.py."""

from click.testing import CliRunner

from goldloop.cli import main
from goldloop.demo import read_newsgroups


def test_newsgroups_data_is_read_normalised():
    rows = read_newsgroups("test")
    labels = {label for _, label in rows}
    assert len(labels) == 20 and len(rows) > 7000
    assert all(text == text.lower() and text.replace(" ", "").isalpha() for text, _ in rows[:200])


def test_demo_runs_end_to_end(tmp_path):
    result = CliRunner().invoke(main, ["-q", "demo", "--dir", str(tmp_path / "demo"), "--backend", "fake",
                                       "--embedder", "fake", "--heldout-per-label", "10",
                                       "--candidates-per-label", "3"])
    assert result.exit_code == 0, result.output
    assert "gold only         macro-F1" in result.output and "gold + synthetic  macro-F1" in result.output
    assert "on 200 held-out real records" in result.output
