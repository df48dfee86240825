"""``python -m bench --publish``: the table between the markers of docs/performance.md is replaced, nothing
else on the page changes, and only a whole run without errors is published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import STAGES
from bench.publish import BEGIN, END, PublishError, publish, replace_block
from bench.table import markdown


def _page(tmp_path: Path, middle: str = "old table") -> Path:
    page = tmp_path / "docs" / "performance.md"
    page.parent.mkdir()
    page.write_text(f"# Performance\n\nintro\n\n{BEGIN}\n{middle}\n{END}\n\n## Stages\n\nprose\n")
    return page


def _results(**extra: object) -> dict[str, object]:
    return {
        "profile": "full",
        "stages": list(STAGES),
        "date": "2026-12-05T06:00:00+00:00",
        "elapsed_s": 1800.0,
        "machine": {"cores": 2},
        "sink": {"rows_per_s": 90_000.0, "baseline_rows_per_s": 100_000.0},
        **extra,
    }


def test_the_block_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    page = _page(tmp_path)
    results = _results()
    out = publish(results, markdown(results), page)
    text = page.read_text()
    assert "old table" not in text
    assert text.startswith("# Performance\n\nintro\n\n" + BEGIN + "\n")
    assert text.endswith(END + "\n\n## Stages\n\nprose\n")
    assert "| sink rows into ClickHouse server | 90,000/s | 100,000/s | 90% |" in text
    assert "docs/bench/full.json" in text and "30 min" in text
    assert out == page.parent / "bench" / "full.json"
    assert json.loads(out.read_text())["sink"]["rows_per_s"] == 90_000.0
    # publishing again replaces the previous table rather than adding one
    publish(_results(date="2026-12-06T06:00:00+00:00"), "| new |", page)
    again = page.read_text()
    assert again.count(BEGIN) == 1 and "| new |" in again and "90,000/s" not in again


@pytest.mark.parametrize(
    "results, reason",
    [
        (_results(errors={"edge": "boom"}), "errors"),
        (_results(stages=["cores", "sink"]), "not every stage ran"),
    ],
)
def test_a_partial_or_failed_run_is_not_published(tmp_path: Path, results: dict, reason: str) -> None:
    page = _page(tmp_path)
    with pytest.raises(PublishError, match=reason):
        publish(results, "| x |", page)
    assert "old table" in page.read_text()
    assert not (page.parent / "bench").exists()


def test_a_page_without_exactly_one_pair_of_markers_is_refused() -> None:
    with pytest.raises(PublishError):
        replace_block("no markers here", "| x |")
    with pytest.raises(PublishError):
        replace_block(f"{BEGIN}\n{END}\n{BEGIN}\n{END}", "| x |")


def test_the_repository_page_has_the_markers() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
    assert replace_block(page.read_text(), "x").count("\nx\n") == 1
