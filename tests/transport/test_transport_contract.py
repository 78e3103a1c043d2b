"""The transport contract, run against real sshd (asyncssh) and against the local machine."""

from __future__ import annotations

import asyncio

import pytest

from xm_slurm.errors import RemoteCommandError
from xm_slurm.transport import SSHTransport, Transport

pytestmark = pytest.mark.cluster

ODD_ARGS = ["plain", "two words", "it's", '"dq"', "$HOME", "`id`", "a\nb", "ünï©ødé", "*", "", "-n", ";ls"]


async def test_argv_is_quoted_byte_for_byte(transport: Transport) -> None:
    result = await transport.run(["printf", "%s\\0", *ODD_ARGS])
    assert result.stdout.split("\0")[:-1] == ODD_ARGS
    assert result.exit_status == 0 and result.ok


async def test_string_command_goes_through_the_shell(transport: Transport) -> None:
    result = await transport.run("echo $((6 * 7)) && echo err >&2")
    assert (result.stdout, result.stderr) == ("42\n", "err\n")


async def test_nonzero_exit_raises_with_command_status_and_stderr(transport: Transport) -> None:
    with pytest.raises(RemoteCommandError) as info:
        await transport.run("echo boom >&2; exit 3")
    err = info.value
    assert err.exit_status == 3 and err.stderr == "boom\n" and "exit 3" in err.command
    assert "status 3" in str(err) and "boom" in str(err)
    result = await transport.run("exit 5", check=False)
    assert result.exit_status == 5 and not result.ok


async def test_signal_death_is_128_plus_signal(transport: Transport) -> None:
    result = await transport.run("kill -9 $$", check=False)
    assert result.exit_status == 137


async def test_stdin_input(transport: Transport) -> None:
    text = "line 1\nünï 2\n" * 1000
    assert (await transport.run("cat", input=text)).stdout == text


async def test_timeout_raises(transport: Transport) -> None:
    with pytest.raises(RemoteCommandError, match="timed out") as info:
        await transport.run("sleep 30", timeout=0.5)
    assert info.value.exit_status is None


async def test_files_modes_and_atomic_overwrite(transport: Transport, remote_dir: str) -> None:
    nested = f"{remote_dir}/a/b/state"
    assert not await transport.exists(nested)
    await transport.mkdir(nested)
    await transport.mkdir(nested)  # existing is fine
    st = await transport.stat(nested)
    assert st.is_dir and st.permissions == 0o700
    assert (await transport.stat(f"{remote_dir}/a")).permissions == 0o700  # created parents are private too

    script = f"{nested}/job.sh"
    await transport.write_text(script, "#!/bin/sh\necho ünï\n", mode=0o700)
    assert (await transport.stat(script)).permissions == 0o700
    assert (await transport.run([script])).stdout == "ünï\n"
    await transport.write_text(script, "second", mode=0o600)
    st = await transport.stat(script)
    assert st.is_file and st.permissions == 0o600 and st.size == len("second")
    assert await transport.read_text(script) == "second"
    # Temp + rename leaves nothing behind.
    assert (await transport.run(["ls", "-A", nested])).stdout.split() == ["job.sh"]

    await transport.mkdir(f"{remote_dir}/loose", mode=0o755)
    assert (await transport.stat(f"{remote_dir}/loose")).permissions == 0o755


async def test_home_relative_paths(transport: Transport, remote_dir: str) -> None:
    name = remote_dir.rsplit("/", 1)[-1]
    try:
        await transport.write_text(f"~/{name}.txt", "home")
        assert await transport.read_text(f"{name}.txt") == "home"
        assert (await transport.run(["cat", f"{name}.txt"])).stdout == "home"  # commands start in $HOME
    finally:
        await transport.run(["rm", "-f", f"{name}.txt"])


async def test_missing_files(transport: Transport, remote_dir: str) -> None:
    with pytest.raises(FileNotFoundError):
        await transport.read_text(f"{remote_dir}/nope")
    with pytest.raises(FileNotFoundError):
        await transport.stat(f"{remote_dir}/nope")
    assert not await transport.exists(f"{remote_dir}/nope")


async def test_fifty_concurrent_runs_share_one_connection(transport: Transport) -> None:
    connects_before = getattr(transport, "connects", None)
    results = await asyncio.gather(*(transport.run(["echo", str(i)]) for i in range(50)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(50)]
    if isinstance(transport, SSHTransport):
        assert transport.connects == connects_before  # no extra connection was opened


async def test_streaming_process(transport: Transport) -> None:
    # The command prints, then waits for our end-of-file, then prints again.
    async with await transport.start("echo first; cat >/dev/null; echo after-eof") as process:
        lines = process.lines()
        assert await anext(lines) == "first"
        await process.close_stdin()
        assert [line async for line in lines] == ["after-eof"]
