"""Every job id form Slurm prints, parsed and printed back."""

from __future__ import annotations

import pytest

from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId, expand_array_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123", SlurmJobId(123)),
        ("123_4", SlurmJobId(123, array_task=4)),
        ("123_[0-9]", SlurmJobId(123, array_spec="0-9")),
        ("123_[1,3,5-7%2]", SlurmJobId(123, array_spec="1,3,5-7%2")),
        ("123+1", SlurmJobId(123, het_offset=1)),
        ("123;cluster-a", SlurmJobId(123, cluster="cluster-a")),
        ("123.batch", SlurmJobId(123, step="batch")),
        ("123.0", SlurmJobId(123, step="0")),
        ("123.extern", SlurmJobId(123, step="extern")),
        ("123_4.batch", SlurmJobId(123, array_task=4, step="batch")),
        ("123+1.0", SlurmJobId(123, het_offset=1, step="0")),
        (" 77\n", SlurmJobId(77)),
    ],
)
def test_parse_every_form(text: str, expected: SlurmJobId) -> None:
    parsed = SlurmJobId.parse(text)
    assert parsed == expected
    assert SlurmJobId.parse(parsed.to_string()) == parsed  # round trip, cluster included


def test_str_is_slurm_spelling_without_cluster() -> None:
    assert str(SlurmJobId.parse("123_4;c")) == "123_4"
    assert SlurmJobId.parse("123_4;c").to_string() == "123_4;c"
    assert str(SlurmJobId.parse("9+0.batch")) == "9+0.batch"


@pytest.mark.parametrize(
    "bad", ["", "abc", "0", "-1", "12_", "12_x", "12+", "12_[a]", "12 13", "12_3+1", "1;"]
)
def test_parse_rejects_bad_ids_naming_them(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        SlurmJobId.parse(bad)
    assert repr(bad) in str(info.value) or "positive" in str(info.value)


def test_constructor_rejects_mixed_parts() -> None:
    with pytest.raises(ValidationError, match="mixes"):
        SlurmJobId(1, array_task=1, het_offset=0)
    with pytest.raises(ValidationError, match="non-negative"):
        SlurmJobId(1, array_task=-1)
    with pytest.raises(ValidationError, match="positive"):
        SlurmJobId(True)  # type: ignore[arg-type]


def test_sbatch_parsable_output() -> None:
    assert SlurmJobId.from_sbatch_parsable("42\n") == SlurmJobId(42)
    assert SlurmJobId.from_sbatch_parsable("42;mycluster\n") == SlurmJobId(42, cluster="mycluster")
    assert SlurmJobId.from_sbatch_parsable("sbatch: warning: x\n43\n") == SlurmJobId(43)
    with pytest.raises(ValidationError, match="no job id"):
        SlurmJobId.from_sbatch_parsable("\n")


def test_views() -> None:
    task = SlurmJobId.parse("5_3;c")
    assert task.base == SlurmJobId(5, cluster="c")
    assert task.is_array_task and not task.is_het_component and not task.is_step
    assert task.base.task(3) == task
    assert SlurmJobId(5).component(1) == SlurmJobId.parse("5+1")
    assert SlurmJobId.parse("5.batch").without_step() == SlurmJobId(5)
    assert SlurmJobId.parse("5_[0-3]").array_tasks() == (0, 1, 2, 3)
    assert len({SlurmJobId.parse("5_3"), SlurmJobId(5, array_task=3)}) == 1  # hashable, equal


@pytest.mark.parametrize(
    ("spec", "tasks"),
    [
        ("0-9", tuple(range(10))),
        ("1,3,5", (1, 3, 5)),
        ("0-15:4", (0, 4, 8, 12)),
        ("0-99%10", tuple(range(100))),
        ("7", (7,)),
        ("3,0-1", (0, 1, 3)),
    ],
)
def test_expand_array_spec(spec: str, tasks: tuple[int, ...]) -> None:
    assert expand_array_spec(spec) == tasks


@pytest.mark.parametrize("bad", ["", "a", "5-1", "0-9:0", "1,,2"])
def test_expand_array_spec_rejects(bad: str) -> None:
    with pytest.raises(ValidationError, match="array spec"):
        expand_array_spec(bad)
