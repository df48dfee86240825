"""Bracket query strings: list indices are ASCII numbers of bounded size (issue 11, defect 4)."""

from __future__ import annotations

import pytest

from ingest.errors import Rejected
from ingest.formats.phpquery import parse_bracket_query


def test_indices_and_appends():
    data = parse_bracket_query([("ev[1][evt]", "b"), ("ev[0][evt]", "a"), ("seg[devices][]", "DESK")])
    assert data == {"ev": [{"evt": "a"}, {"evt": "b"}], "seg": {"devices": ["DESK"]}}


@pytest.mark.parametrize("index", ["\u00b2", "\u0661", "\uff11", "\u0967", "1\u00b2"])
def test_unicode_digit_index_is_refused(index: str):
    with pytest.raises(Rejected) as exc:
        parse_bracket_query([(f"ev[{index}][evt]", "hitGoal"), ("ev[0][evt]", "tr")])
    assert exc.value.status == 400 and exc.value.code == "invalid_query"
    assert index in exc.value.message


def test_huge_index_is_refused_before_int_conversion():
    with pytest.raises(Rejected) as exc:
        parse_bracket_query([("ev[" + "1" * 5000 + "][evt]", "hitGoal")])
    assert exc.value.code == "invalid_query" and "larger than" in exc.value.message
