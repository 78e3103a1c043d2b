"""How a job's tasks and GPUs are laid out: `Topology("AxB")` and the task layout rules (model layer, pure).

Resources are per replica, as in XManager: `JobRequirements(GPU=2, replicas=4)` is 4 tasks of 2 GPUs each,
8 in all, on however many nodes Slurm picks (`--ntasks=4 --gpus-per-task=2`). `--gres=gpu:2` would count
per NODE, and four tasks placed on one node would then share two GPUs. The other layouts:

* `JobRequirements(GPU=Topology("4x2"))`: 4 GPUs per task x 2 tasks, the same rule spelled as one value;
  `Topology("4x2", switches=1, switch_wait=timedelta(minutes=30))` adds `--switches=1@30:00` (all nodes
  under one network switch, waiting at most that long for such an allocation before taking any).
* `JobRequirements(GPU=1, nodes=2, tasks_per_node=4)`: exactly 2 nodes with 4 tasks of 1 GPU each
  (`--nodes=2 --ntasks-per-node=4 --ntasks=8 --gpus-per-task=1`).
"""

from __future__ import annotations

import datetime as dt
import math
import re

from xm_slurm.errors import ValidationError

_SPEC = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")
#: Slurm keeps task and node counts in 32 bits; a real job stays far below this.
MAX_COUNT = 1_000_000


def _count(value: object, what: str, maximum: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(f"{what}={value!r} must be an integer between 1 and {maximum}")
    return value


def slurm_duration(value: dt.timedelta) -> str:
    """`[D-]HH:MM:SS`, whole seconds rounded up: the form sbatch reads for any length, a day and more too."""
    seconds = math.ceil(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


class Topology:
    """`"AxB"`: A GPUs per task x B tasks (0.5.0's `xm_slurm.Topology`), given as an accelerator's amount.

    switches: the most network switches the job's nodes may span (`--switches=N`); switch_wait: how long
    the job may wait for such an allocation before Slurm gives any (`--switches=N@[D-]HH:MM:SS`).
    """

    __slots__ = ("gpus_per_task", "switch_wait", "switches", "tasks")

    def __init__(
        self, spec: str, *, switches: int | None = None, switch_wait: dt.timedelta | None = None
    ) -> None:
        match = _SPEC.fullmatch(spec) if isinstance(spec, str) else None
        if match is None:
            raise ValidationError(
                f"Topology({spec!r}) is not 'AxB' (A GPUs per task x B tasks, both whole numbers >= 1, "
                "e.g. '4x2')"
            )
        a, b = int(match.group(1)), int(match.group(2))
        if not 1 <= a <= 0xFFFD or not 1 <= b <= MAX_COUNT:
            raise ValidationError(
                f"Topology({spec!r}): A (GPUs per task) must be 1..65533 and B (tasks) 1..{MAX_COUNT}"
            )
        self.gpus_per_task = a
        self.tasks = b
        self.switches = None if switches is None else _count(switches, "Topology switches", 0xFFFF)
        if switch_wait is not None:
            if not isinstance(switch_wait, dt.timedelta) or switch_wait.total_seconds() <= 0:
                raise ValidationError(
                    f"Topology switch_wait={switch_wait!r} must be a positive datetime.timedelta"
                )
            if self.switches is None:
                raise ValidationError("Topology switch_wait needs switches=N (the wait is for N switches)")
        self.switch_wait = switch_wait

    def directives(self) -> list[str]:
        """`--switches=N[@wait]`, or nothing: the tasks and GPUs are rendered by `JobRequirements`."""
        if self.switches is None:
            return []
        wait = f"@{slurm_duration(self.switch_wait)}" if self.switch_wait is not None else ""
        return [f"--switches={self.switches}{wait}"]

    def __repr__(self) -> str:
        extra = "" if self.switches is None else f", switches={self.switches}"
        extra += "" if self.switch_wait is None else f", switch_wait={self.switch_wait!r}"
        return f"Topology('{self.gpus_per_task}x{self.tasks}'{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[int, int, int | None, dt.timedelta | None]:
        return (self.gpus_per_task, self.tasks, self.switches, self.switch_wait)


def task_layout(
    replicas: object, nodes: object, tasks_per_node: object, topology: Topology | None
) -> tuple[int, int | None, int | None]:
    """(tasks, nodes, tasks per node) after checking that the ways of giving them agree."""
    if nodes is not None:
        nodes = _count(nodes, "nodes")
    if tasks_per_node is not None:
        tasks_per_node = _count(tasks_per_node, "tasks_per_node")
    implied = []
    if topology is not None:
        implied.append((topology.tasks, f"{topology!r} (B tasks)"))
    if isinstance(nodes, int) and isinstance(tasks_per_node, int):
        implied.append((nodes * tasks_per_node, f"nodes={nodes} x tasks_per_node={tasks_per_node}"))
    if replicas is not None:
        replicas = _count(replicas, "replicas")
        implied.append((replicas, f"replicas={replicas}"))
    tasks = implied[0][0] if implied else 1
    for count, source in implied[1:]:
        if count != tasks:
            raise ValidationError(
                f"{implied[0][1]} and {source} disagree on the number of tasks; give the layout once"
            )
    if isinstance(nodes, int) and nodes > tasks:
        raise ValidationError(f"nodes={nodes} is more than the {tasks} task(s); every node needs a task")
    if isinstance(tasks_per_node, int) and nodes is None and tasks % tasks_per_node:
        raise ValidationError(
            f"{tasks} task(s) do not fill nodes of tasks_per_node={tasks_per_node}; give a multiple of it"
        )
    return tasks, nodes, tasks_per_node


def accelerator_directives(
    gres: tuple[str, str | None, str | None], count: int, tasks: int, tasks_per_node: int | None
) -> list[str]:
    """Per task: `--gpus-per-task=[type:]N` (+ `--constraint`); a gres other than gpu (shard, mps) has
    no per-task form in Slurm 22.05, so it is asked per node, which needs the tasks per node."""
    name, gres_type, feature = gres
    typed = f"{gres_type}:{count}" if gres_type else str(count)
    if name == "gpu":
        out = [f"--gpus-per-task={typed}"]
    elif tasks == 1 or tasks_per_node is not None:
        per_node = count * (tasks_per_node or 1)
        out = [f"--gres={name}:{gres_type}:{per_node}" if gres_type else f"--gres={name}:{per_node}"]
    else:
        raise ValidationError(
            f"gres {name!r} is counted per node by Slurm, not per task: with {tasks} tasks give "
            "tasks_per_node=N (and nodes=M) so that each node gets N x the per-task count"
        )
    return out + ([f"--constraint={feature}"] if feature else [])
