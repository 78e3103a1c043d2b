"""The README's quick start runs when copied: only the values of its "your cluster" section change.

test_docs_code_blocks previews it (no connection); here it runs for real on the local cluster, with the
section's values swapped for the local cluster's and every other line as a reader copies it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from local_cluster import LocalCluster, parse_env_file
from test_docs_code_blocks import REPO, Block, _env, _ssh_config, parse_blocks

HEADING = "## Quick start on a real cluster"
_BEGIN = re.compile(r"^# -+ your cluster: the only values to change -+$")
_END = re.compile(r"^# -{40,}$")


def quick_start_block() -> Block:
    """The first Python block after the quick start heading of README.md."""
    readme = REPO / "README.md"
    heading_line = readme.read_text().splitlines().index(HEADING) + 1
    blocks = [b for b in parse_blocks(readme) if b.line > heading_line and b.language == "python"]
    assert blocks, f"README.md: no python block after {HEADING!r}"
    return blocks[0]


def split_sections(text: str) -> tuple[str, str, str]:
    """(before, the reader's cluster values, after): the values lie between the two ruler comments."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if _BEGIN.match(line.rstrip("\n"))]
    assert len(begins) == 1, f"the quick start needs one '# ---- your cluster: ...' line, found {len(begins)}"
    ends = [i for i in range(begins[0] + 1, len(lines)) if _END.match(lines[i].rstrip("\n"))]
    assert ends, "the quick start's cluster section has no closing '# -----' line"
    start, end = begins[0] + 1, ends[0]
    return "".join(lines[:start]), "".join(lines[start:end]), "".join(lines[end:])


def local_values(cluster: LocalCluster) -> str:
    """The section as a reader of this machine would fill it in (`mycluster`: an alias of its SSH config)."""
    return (
        "CLUSTER = xm_slurm.SlurmClusterConfig(\n"
        '    name="mycluster",\n'
        '    ssh=xm_slurm.SlurmSSHConfig(host="mycluster"),\n'
        "    runtime=xm_slurm.ContainerRuntime.PODMAN,\n"
        f"    partition={cluster.partition!r},\n"
        ")\n"
        f"IMAGE = {cluster.python_image!r}\n"
    )


def test_only_the_cluster_section_is_site_specific() -> None:
    before, values, after = split_sections(quick_start_block().text)
    assert "CLUSTER = xm_slurm.SlurmClusterConfig(" in values and "IMAGE = " in values
    for site_word in ("example.org", "login.", "partition=", "docker.io", "IMAGE =", "CLUSTER ="):
        assert site_word not in before + after, f"{site_word!r} outside the quick start's cluster section"
    # What the rest of the script needs from the section: the two names, nothing else.
    assert re.findall(r"\b(CLUSTER|IMAGE)\b", after), "the script does not use the section's values"


@pytest.mark.cluster
def test_quick_start_runs_on_the_local_cluster(local_cluster: LocalCluster, tmp_path: Path) -> None:
    before, _, after = split_sections(quick_start_block().text)
    script = tmp_path / "launch.py"
    script.write_text(before + local_values(local_cluster) + after)
    extra = parse_env_file(REPO / ".local-cluster" / "env.sh")
    extra["XM_SLURM_SSH_CONFIG"] = str(_ssh_config(local_cluster, tmp_path))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(tmp_path / "state", extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for unit, lr in ((1, "0.1"), (2, "0.01"), (3, "0.001")):
        assert f"work unit {unit}: COMPLETED" in out, out
        assert re.search(rf"work unit {unit} trains with .*--lr[= ]{re.escape(lr)}\b", out), out


def test_getting_started_shows_the_same_script() -> None:
    """docs/getting-started.md repeats the quick start: the copy a reader takes from either one runs."""
    page = REPO / "docs" / "getting-started.md"
    previewed = [b for b in parse_blocks(page) if b.marker == ("run", "preview")]
    assert [b.text for b in previewed] == [quick_start_block().text], (
        f"{page.relative_to(REPO)}: its run: preview block must be the README's quick start, verbatim"
    )
