from __future__ import annotations

import datetime as dt

from xm_slurm import dependencies as deps


def test_single_terms() -> None:
    assert deps.after("1").to_dependency_str() == "after:1"
    assert deps.after("1", "2", time=dt.timedelta(minutes=5)).to_dependency_str() == "after:1+5:2+5"
    assert deps.afterany("3_4").to_dependency_str() == "afterany:3_4"
    assert deps.afterok("5", "6").to_dependency_str() == "afterok:5:6"
    assert deps.afternotok("7+1").to_dependency_str() == "afternotok:7+1"
    assert deps.aftercorr("8").to_dependency_str() == "aftercorr:8"
    assert deps.singleton().to_dependency_str() == "singleton"


def test_and_is_comma_joined_and_flattened() -> None:
    d = deps.afterok("1") & deps.afterany("2") & deps.singleton()
    assert d.to_dependency_str() == "afterok:1,afterany:2,singleton"
    assert len(d.dependencies) == 3


def test_or_is_question_mark_joined() -> None:
    d = deps.afterok("1") | (deps.afternotok("2") | deps.after("3", time=dt.timedelta(seconds=30)))
    assert str(d) == "afterok:1?afternotok:2?after:3+1"


def test_values_compare_equal() -> None:
    assert deps.afterok("1") & deps.afterok("2") == deps.afterok("1") & deps.afterok("2")
    assert deps.afterok(12) == deps.afterok("12")
