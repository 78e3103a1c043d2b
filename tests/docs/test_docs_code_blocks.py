"""Every fenced code block of README.md and docs/*.md is checked, or the test names it (file:line).

A block carries a marker, an HTML comment on the closest non-blank line before its opening fence
(docs/contributing.md explains them to writers):

* `<!-- from: PATH -->`: a verbatim excerpt of PATH (up to indentation and line wrapping, which
  `ruff format` may change in Markdown): its lines are a contiguous run of PATH's lines. PATH must be run
  by a test: an example that tests/examples runs, or a module of xm_slurm that a test imports.
* `<!-- run: python -->`: executed as a script in a fresh interpreter, in an empty folder, with a private
  metadata store (XM_SLURM_STATE_DIR), offline.
* `<!-- run: preview -->`: a launch script, executed with `xm-slurm preview` (the library's dry run: nothing
  is submitted, no connection is made); it must print at least one sbatch script.
* `<!-- run: shell -->`: bash (`-euo pipefail`) in the repository, against the local cluster, with a
  private store and the local cluster's settings (.local-cluster/env.sh); XM_SLURM_SSH_CONFIG names an
  OpenSSH config whose `Host mycluster` is the local cluster. `<!-- run: shell, store: EXAMPLE -->` first runs
  examples/EXAMPLE/launch.py into that store.
* `<!-- not-run: KIND: reason -->`: not runnable; KIND is `ssh_config` (checked with `ssh -G`), `toml`,
  `yaml` (parsed) or `output` / `synopsis` / `commands` (a reason of a few words is required).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from example_runs import examples_run_by_tests
from local_cluster import LocalCluster, parse_env_file

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
_MARKER = re.compile(r"^\s*<!--\s*(from|run|not-run)\s*:\s*(.*?)\s*-->\s*$")
NOT_RUN_KINDS = {"ssh_config", "toml", "yaml", "output", "synopsis", "commands"}
RUN_KINDS = {"python", "preview", "shell"}
# Settings of the caller that would make a block use another store, cluster or identity.
_CLEARED = (
    "XM_SLURM_API_BACKEND",
    "XM_SLURM_REST_API_BASE_URL",
    "XM_SLURM_REST_API_TOKEN",
    "XM_SLURM_REST_API_CA_BUNDLE",
    "XM_SLURM_DRY_RUN",
    "XM_SLURM_DRY_RUN_REMOTE",
    "XM_SLURM_EXPERIMENT_ID",
    "XM_SLURM_WORK_UNIT_ID",
    "XM_SLURM_SSH_CONFIG",
    "CONTAINERS_CONF",
)


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: tuple[str, str] | None  # (kind, argument)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, language = match.groups()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = _MARKER.match(lines[before]) if before >= 0 else None
        blocks.append(
            Block(
                path,
                start + 1,
                language,
                "\n".join(body) + "\n",
                (marker.group(1), marker.group(2)) if marker else None,
            )
        )
    return blocks


BLOCKS = [block for path in DOCUMENTS for block in parse_blocks(path)]


def _blocks(kind: str, argument: str | None = None) -> list[pytest.param]:  # type: ignore[valid-type]
    out = []
    for block in BLOCKS:
        if block.marker is None or block.marker[0] != kind:
            continue
        if argument is not None and block.marker[1].split(",")[0].strip() != argument:
            continue
        marks = [pytest.mark.cluster] if (kind, argument) == ("run", "shell") else []
        out.append(pytest.param(block, id=block.where, marks=marks))
    return out


def test_every_block_is_marked() -> None:
    problems = []
    for block in BLOCKS:
        if block.marker is None:
            problems.append(f"{block.where}: no <!-- from: / run: / not-run: --> marker before the block")
            continue
        kind, argument = block.marker
        if kind == "run" and argument.split(",")[0].strip() not in RUN_KINDS:
            problems.append(f"{block.where}: run: {argument!r} is not one of {sorted(RUN_KINDS)}")
        if kind == "not-run":
            what, _, reason = argument.partition(":")
            if what.strip() not in NOT_RUN_KINDS or len(reason.split()) < 3:
                problems.append(
                    f"{block.where}: write <!-- not-run: KIND: reason --> with KIND in "
                    f"{sorted(NOT_RUN_KINDS)} and a reason of at least three words, not {argument!r}"
                )
    assert problems == [], "\n".join(problems)


# ---- (a) excerpts ------------------------------------------------------------------------------------


def _squash(text: str) -> str:
    # Whitespace and trailing commas before a closing bracket: what `ruff format` changes when it joins or
    # splits the lines of a dedented excerpt.
    return re.sub(r",([)\]}])", r"\1", re.sub(r"\s+", "", text))


def excerpt_found(excerpt: str, source: str) -> bool:
    """Whether `excerpt` is a run of whole lines of `source`, up to whitespace and trailing commas."""
    wanted = _squash(excerpt)
    lines = source.splitlines()
    for start in range(len(lines)):
        for end in range(start + 1, len(lines) + 1):
            got = _squash("\n".join(lines[start:end]))
            if got == wanted:
                return True
            if len(got) > len(wanted) + 1:
                break
    return False


@functools.cache
def _test_sources() -> str:
    return "\n".join(p.read_text() for p in (REPO / "tests").rglob("*.py"))


def exercised_by_a_test(relative: str) -> str | None:
    """None if the file is run by a test; else why not."""
    parts = Path(relative).parts
    if parts[0] == "examples" and len(parts) >= 3:
        if parts[1] in examples_run_by_tests():
            return None
        return f"tests/examples runs no example {parts[1]!r} (example_env.run({parts[1]!r}))"
    if parts[0] == "xm_slurm" and relative.endswith(".py"):
        module = ".".join(Path(relative).with_suffix("").parts).removesuffix(".__init__")
        parent, _, name = module.rpartition(".")
        patterns = (f"import {module}", f"from {module} import", f"from {parent} import {name}")
        if any(p in _test_sources() for p in patterns):
            return None
        return f"no test imports {module}"
    return "excerpts come from examples/ or xm_slurm/ files that tests run"


@pytest.mark.parametrize("block", _blocks("from"))
def test_excerpt_is_verbatim_from_a_tested_file(block: Block) -> None:
    relative = block.marker[1]  # type: ignore[index]
    source = REPO / relative
    assert source.is_file(), f"{block.where}: from: {relative} does not exist"
    assert excerpt_found(block.text, source.read_text()), (
        f"{block.where}: the block is not a contiguous excerpt of {relative} (copy it again from the file)"
    )
    problem = exercised_by_a_test(relative)
    assert problem is None, f"{block.where}: {relative}: {problem}"


def test_excerpt_matching_is_strict() -> None:
    source = "def f():\n    x = call(\n        1\n    )\n    return x\n"
    assert excerpt_found("x = call(1)\nreturn x\n", source)
    assert not excerpt_found("x = call(2)\n", source)
    assert not excerpt_found("x = call(1)\n\nreturn y\n", source)
    assert not excerpt_found("= call(1)\n", source)  # must start at a line start
    assert excerpt_found("x = call(\n    1,\n)\n", source)  # ruff's trailing comma
    assert exercised_by_a_test("examples/no-such-example/launch.py") is not None
    assert exercised_by_a_test("xm_slurm/executors.py") is None


# ---- (b) blocks that run -----------------------------------------------------------------------------


def _env(state: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(extra or {})
    env["XM_SLURM_STATE_DIR"] = str(state)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(command: list[str], block: Block, *, timeout: float, **kwargs: object) -> str:
    # A process group of its own: whatever the block starts in the background is stopped with it.
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,  # type: ignore[call-overload]
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{block.where}: still running after {timeout} s:\n{out}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    assert proc.returncode == 0, f"{block.where}: exited with {proc.returncode}:\n{out}"
    return out


@pytest.mark.parametrize("block", _blocks("run", "python"))
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    assert block.language == "python", f"{block.where}: run: python on a {block.language!r} block"
    script = tmp_path / "block.py"
    script.write_text(block.text)
    _run([sys.executable, str(script)], block, timeout=120, cwd=tmp_path, env=_env(tmp_path / "state"))


@pytest.mark.parametrize("block", _blocks("run", "preview"))
def test_launch_script_block_previews(block: Block, tmp_path: Path) -> None:
    assert block.language == "python", f"{block.where}: run: preview on a {block.language!r} block"
    script = tmp_path / "launch.py"
    script.write_text(block.text)
    env = _env(tmp_path / "state")
    out = _run([str(BIN / "xm-slurm"), "preview", str(script)], block, timeout=120, cwd=tmp_path, env=env)
    assert re.search(r"^# ===== script 1/\d+: ", out, re.MULTILINE), f"{block.where}: no script:\n{out}"
    assert "#SBATCH" in out


def _ssh_config(cluster: LocalCluster, folder: Path) -> Path:
    """An OpenSSH config in which `mycluster` is the local cluster, as a user's ~/.ssh/config would say."""
    path = folder / "ssh_config"
    path.write_text(
        "Host mycluster\n"
        f"    HostName {cluster.ssh_host}\n"
        f"    Port {cluster.ssh_port}\n"
        f"    User {cluster.ssh_user}\n"
        f"    IdentityFile {cluster.ssh_key}\n"
        f"    UserKnownHostsFile {cluster.known_hosts}\n"
        # The examples' experiments record the cluster's address; their readers log in as configured here.
        f"Host {cluster.ssh_host}*\n"
        f"    IdentityFile {cluster.ssh_key}\n"
        f"    UserKnownHostsFile {cluster.known_hosts}\n"
    )
    return path


@pytest.mark.parametrize("block", _blocks("run", "shell"))
def test_shell_block_runs(block: Block, local_cluster: LocalCluster, tmp_path: Path) -> None:
    assert block.language in ("bash", "sh", "shell"), (
        f"{block.where}: run: shell on a {block.language!r} block"
    )
    options = dict(
        part.strip().split(":", 1)
        for part in block.marker[1].split(",")[1:]  # type: ignore[index]
    )
    tmp_path.chmod(0o755)  # the jobs' containers may mount folders under it
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    extra = parse_env_file(REPO / ".local-cluster" / "env.sh")
    extra.update(
        XM_SLURM_SSH_CONFIG=str(_ssh_config(local_cluster, tmp_path)),
        XM_EXAMPLES_SHARED_DIR=str(shared),
    )
    env = _env(tmp_path / "state", extra)
    if "store" in options:
        example = REPO / "examples" / options["store"].strip() / "launch.py"
        _run([sys.executable, str(example)], block, timeout=300, cwd=REPO, env=env)
    _run(["bash", "-euo", "pipefail", "-c", block.text], block, timeout=480, cwd=REPO, env=env)


# ---- (c) blocks that are not run ---------------------------------------------------------------------


@pytest.mark.parametrize("block", _blocks("not-run"))
def test_not_run_block_is_valid(block: Block, tmp_path: Path) -> None:
    kind = block.marker[1].partition(":")[0].strip()  # type: ignore[index]
    if kind == "toml":
        tomllib.loads(block.text)
    elif kind == "yaml":
        yaml.safe_load(block.text)
    elif kind == "ssh_config":
        config = tmp_path / "config"
        config.write_text(block.text)
        hosts = re.findall(r"^Host\s+(\S+)", block.text, re.MULTILINE)
        assert hosts, f"{block.where}: an ssh_config block without a Host line"
        for host in hosts:
            result = subprocess.run(
                ["ssh", "-G", "-F", str(config), host], capture_output=True, text=True, check=False
            )
            assert result.returncode == 0, f"{block.where}: ssh -G {host}: {result.stderr}"
    elif kind == "commands":
        # Commands not run here must at least be valid shell.
        result = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{block.where}: {result.stderr}"
    else:
        assert block.text.strip(), f"{block.where}: an empty block"
    assert len(block.marker[1].partition(":")[2].split()) >= 3, f"{block.where}: give a reason"  # type: ignore[index]
