"""The 0.5.0 job surface's executor options and the sbatch directive each renders (shared by the static
rendering tests and the `sbatch --test-only` tests on the local cluster)."""

from __future__ import annotations

from typing import Any

# (executor keywords, the directive it renders, whether Slurm 22.05's sbatch knows it)
DIRECTIVES: list[tuple[dict[str, Any], str, bool]] = [
    ({"reservation": "xm-test-resv"}, "--reservation=xm-test-resv", True),
    ({"exclusive": True}, "--exclusive", True),
    ({"exclusive": "user"}, "--exclusive=user", True),
    ({"oversubscribe": True}, "--oversubscribe", True),
    ({"overcommit": True}, "--overcommit", True),
    ({"nice": 100}, "--nice=100", True),
    ({"bind": {"gpu": "closest"}}, "--gpu-bind=closest", True),
    ({"bind": {"mem": "local"}}, "--mem-bind=local", True),
    ({"bind": {"tres": "gres/gpu:closest"}}, "--tres-bind=gres/gpu:closest", False),
    ({"gres_flags": "enforce-binding"}, "--gres-flags=enforce-binding", True),
    ({"gres_flags": "disable-binding"}, "--gres-flags=disable-binding", True),
    ({"gres_flags": "one-task-per-sharing"}, "--gres-flags=one-task-per-sharing", False),
    ({"gres_flags": "multiple-tasks-per-sharing"}, "--gres-flags=multiple-tasks-per-sharing", False),
    ({"gres_flags": "allow-task-sharing"}, "--gres-flags=allow-task-sharing", False),
]


def case_id(case: tuple[dict[str, Any], str, bool]) -> str:
    return case[1].lstrip("-")
