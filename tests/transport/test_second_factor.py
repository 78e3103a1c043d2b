"""Keyboard-interactive logins and endpoint failover against the local cluster's real sshds.

sshd-mfa (scripts/local-cluster) asks for the key, then a TOTP code through PAM (pam_google_authenticator),
like the Alliance sites; its log counts each second factor answered. Failover runs against the plain sshd
behind a closed port, a black-holed one (accepts, never answers) and a server with another host key.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import select
import stat
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from second_factor_helpers import (
    SecondFactorSSHD,
    accepted_second_factors,
    black_hole,
    free_port,
    mfa_config,
    second_factor_sshd,
    stop_session_holder,
    totp,
)

from xm_slurm.errors import AuthenticationError, ConnectionLostError, HostKeyError
from xm_slurm.ssh_config import Endpoint, PublicKey, SSHConfig
from xm_slurm.transport import SSHTransport, ssh_session

pytestmark = pytest.mark.cluster


@pytest.fixture
def sshd(local_cluster: LocalCluster) -> SecondFactorSSHD:
    return second_factor_sshd()


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private state folder (so a private session holder) per test; its holder is ended afterwards."""
    folder = tmp_path / "state"
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(folder))
    monkeypatch.setenv("XM_SLURM_SSH_PERSIST", "60")
    yield folder


def plain_config(lc: LocalCluster, *endpoints: Endpoint, **overrides: object) -> SSHConfig:
    fields: dict[str, object] = {
        "endpoints": endpoints,
        "user": lc.ssh_user,
        "client_keys": (lc.ssh_key,),
        "known_hosts": lc.known_hosts,
        "config_files": (),
    }
    fields.update(overrides)
    return SSHConfig(**fields)  # type: ignore[arg-type]


def _plain_host_key(lc: LocalCluster) -> list[str]:
    """The plain sshd's key, from its known_hosts line `[127.0.0.1]:port,... ssh-ed25519 AAAA...`."""
    return Path(lc.known_hosts).read_text().split()[1:3]


async def test_the_callback_answering_the_current_code_logs_in_once_for_every_transport(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD
) -> None:
    asked: list[tuple[str, bool]] = []

    def answer(prompt: str, echo: bool) -> str:
        asked.append((prompt, echo))
        return totp(sshd.secret_file)

    config = mfa_config(local_cluster, sshd, prompt_handler=answer)
    before = accepted_second_factors(sshd)
    path = f"/tmp/xm-mfa-{uuid.uuid4().hex[:12]}"
    try:
        async with SSHTransport(config) as transport:
            result = await transport.run("id -un; echo to-stderr >&2; exit 3", check=False)
            assert (result.exit_status, result.stdout, result.stderr) == (3, f"{sshd.user}\n", "to-stderr\n")
            await transport.mkdir(path)
            await transport.write_text(f"{path}/f", "a\nb\n", mode=0o640)
            assert await transport.read_text(f"{path}/f") == "a\nb\n"
            assert (await transport.stat(f"{path}/f")).permissions == 0o640
            async with await transport.start(["cat", f"{path}/f"]) as process:
                assert [line async for line in process.lines()] == ["a", "b"]
            assert transport.via_session and transport.connects == 1
        # The holder's files are private: its folder and the state folder 0700, socket and key not for others.
        files = ssh_session.paths_for(config)
        for folder in (files["sock"].parent, files["sock"].parent.parent):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        for name in ("sock", "pub", "log", "lock"):
            assert stat.S_IMODE(files[name].stat().st_mode) & 0o077 == 0, files[name]
        assert asked == [("Verification code: ", False)]
        assert accepted_second_factors(sshd) == before + 1
        # Another transport (as another process would) uses the held login: nothing to answer, no new login.
        async with SSHTransport(mfa_config(local_cluster, sshd)) as again:
            assert (await again.run(["rm", "-r", path])).ok and again.via_session
        assert accepted_second_factors(sshd) == before + 1
    finally:
        stop_session_holder(config)


async def test_a_wrong_code_is_refused_with_a_clear_error(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD
) -> None:
    current = {totp(sshd.secret_file, time.time() + d) for d in (-90, -60, -30, 0, 30, 60, 90)}
    wrong = next(code for code in ("000000", "111111", "222222") if code not in current)
    calls: list[str] = []

    def answer(prompt: str, echo: bool) -> str:
        calls.append(prompt)
        return wrong

    config = mfa_config(local_cluster, sshd, prompt_handler=answer)
    before = accepted_second_factors(sshd)
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        async with SSHTransport(config) as transport:
            await transport.run("true")
    message = str(info.value)
    assert "refused the answer to its keyboard-interactive prompt 'Verification code:'" in message, message
    assert f"{sshd.user}@127.0.0.1:{sshd.port}" in message and "wrong or expired" in message, message
    assert wrong not in message
    assert calls == ["Verification code: "]  # asked once: declined, not re-answered until MaxAuthTries
    assert time.monotonic() - started < 10
    assert accepted_second_factors(sshd) == before
    assert not ssh_session.paths_for(config)["sock"].exists()  # no holder was left serving


def test_no_prompt_handler_and_no_terminal_is_a_clear_error_not_a_hang(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD, tmp_path: Path
) -> None:
    # A batch job or CI: a new session (no controlling terminal), stdin not a terminal either.
    code = (
        "import asyncio, json, sys\n"
        "from xm_slurm.ssh_config import SSHConfig, Endpoint, PublicKey\n"
        "from xm_slurm.transport import SSHTransport\n"
        "a = json.loads(sys.argv[1])\n"
        "c = SSHConfig(endpoints=[Endpoint('127.0.0.1', a['port'])], public_key=PublicKey(*a['key']),"
        " user=a['user'], client_keys=[a['client_key']], config_files=())\n"
        "async def main():\n"
        "    async with SSHTransport(c) as t:\n"
        "        await t.run('true')\n"
        "asyncio.run(main())\n"
    )
    args = {
        "port": sshd.port,
        "key": list(sshd.host_key),
        "user": sshd.user,
        "client_key": local_cluster.ssh_key,
    }
    before = accepted_second_factors(sshd)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "AuthenticationError" in result.stderr or "NoAnswer" in result.stderr, result.stderr
    assert "no terminal and no prompt_handler" in result.stderr, result.stderr
    assert f"127.0.0.1:{sshd.port}" in result.stderr and "'Verification code:'" in result.stderr
    assert "XM_SLURM_SSH_PERSIST" in result.stderr and "prompt_handler=" in result.stderr  # what to do
    assert elapsed < 30, elapsed  # no wait for an answer that cannot come
    assert accepted_second_factors(sshd) == before


async def test_a_closed_first_endpoint_fails_over_to_the_second(local_cluster: LocalCluster) -> None:
    config = plain_config(
        local_cluster, Endpoint("127.0.0.1", free_port()), Endpoint("127.0.0.1", local_cluster.ssh_port)
    )
    started = time.monotonic()
    async with SSHTransport(config, connect_timeout=5) as transport:
        assert (await transport.run(["echo", "second"])).stdout == "second\n"
    assert time.monotonic() - started < 5


async def test_a_black_holed_first_endpoint_fails_over_within_connect_timeout(
    local_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    with black_hole() as silent:
        config = plain_config(
            local_cluster, Endpoint("127.0.0.1", silent), Endpoint("127.0.0.1", local_cluster.ssh_port)
        )
        started = time.monotonic()
        async with SSHTransport(config, connect_timeout=3) as transport:
            assert (await transport.run(["echo", "second"])).stdout == "second\n"
        elapsed = time.monotonic() - started
    assert 3 <= elapsed < 3 + 3, elapsed
    with capsys.disabled():
        print(f"\n[figure] failover past a black-holed endpoint, connect_timeout=3: {elapsed:.2f} s")


async def test_a_black_holed_endpoint_then_a_second_factor_login(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD, capsys: pytest.CaptureFixture[str]
) -> None:
    with black_hole() as silent:
        config = mfa_config(
            local_cluster,
            sshd,
            endpoints=(Endpoint("127.0.0.1", silent), Endpoint("127.0.0.1", sshd.port)),
            prompt_handler=lambda prompt, echo: totp(sshd.secret_file),
        )
        started = time.monotonic()
        try:
            async with SSHTransport(config, connect_timeout=3) as transport:
                assert (await transport.run(["id", "-un"])).stdout == f"{sshd.user}\n"
            elapsed = time.monotonic() - started
        finally:
            stop_session_holder(config)
    # One wait on the silent endpoint: the session holder logs in at the endpoint that answered.
    assert 3 <= elapsed < 3 + 3, elapsed
    with capsys.disabled():
        print(f"\n[figure] black-holed robot node, then key + TOTP on the next endpoint: {elapsed:.2f} s")


async def test_a_host_key_mismatch_on_the_first_endpoint_is_an_error_not_a_failover(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD
) -> None:
    # The plain sshd's key is pinned; the first endpoint (sshd-mfa) presents another one. The second
    # endpoint would accept this login: reaching it would be a silent failover past a wrong key.
    plain_key = _plain_host_key(local_cluster)
    config = plain_config(
        local_cluster,
        Endpoint("127.0.0.1", sshd.port),
        Endpoint("127.0.0.1", local_cluster.ssh_port),
        public_key=PublicKey(*plain_key),
        known_hosts=None,
    )
    with pytest.raises(HostKeyError) as info:
        async with SSHTransport(config, connect_timeout=5) as transport:
            await transport.run("true")
    message = str(info.value)
    assert f"127.0.0.1:{sshd.port} does not match the pinned host_public_key" in message, message
    assert "other endpoints were not tried" in message, message


async def test_every_endpoint_failing_names_each(local_cluster: LocalCluster) -> None:
    with black_hole() as silent:
        config = plain_config(
            local_cluster, Endpoint("127.0.0.1", free_port()), Endpoint("127.0.0.1", silent)
        )
        with pytest.raises(ConnectionLostError) as info:
            async with SSHTransport(config, connect_timeout=1, max_retries=0) as transport:
                await transport.run("true")
    message = str(info.value)
    assert "could not connect to any of the 2 endpoints" in message and "connection refused" in message
    assert f"127.0.0.1:{silent}: no SSH server answered within 1 s" in message, message


def test_persist_must_be_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XM_SLURM_SSH_PERSIST", "ten minutes")
    with pytest.raises(Exception, match="XM_SLURM_SSH_PERSIST='ten minutes' must be a number of seconds"):
        ssh_session.persist_seconds()


async def test_a_session_holder_ends_after_its_idle_time(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XM_SLURM_SSH_PERSIST", "1")
    config = mfa_config(local_cluster, sshd, prompt_handler=lambda prompt, echo: totp(sshd.secret_file))
    socket_path = ssh_session.paths_for(config)["sock"]
    async with SSHTransport(config) as transport:
        assert (await transport.run("true")).ok and socket_path.exists()
    deadline = time.monotonic() + 30
    while socket_path.exists():
        assert time.monotonic() < deadline, "the holder outlived its idle time"
        await asyncio.sleep(0.1)


async def test_a_holder_whose_key_changed_is_not_trusted(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD
) -> None:
    # The local hop is SSH with the holder's key pinned: a socket answering with another key is not used;
    # the process logs in again (the prompt comes back) instead of talking to an impostor.
    calls: list[str] = []

    def answer(prompt: str, echo: bool) -> str:
        calls.append(prompt)
        return totp(sshd.secret_file)

    config = mfa_config(local_cluster, sshd, prompt_handler=answer)
    files = ssh_session.paths_for(config)
    try:
        async with SSHTransport(config) as transport:
            assert (await transport.run("true")).ok and transport.via_session
        other = _plain_host_key(local_cluster)  # some other real key
        files["pub"].write_text(" ".join(other) + "\n")
        async with SSHTransport(config) as transport:
            assert (await transport.run("true")).ok and transport.via_session
        assert len(calls) == 2  # logged in twice: the first holder was not trusted
    finally:
        stop_session_holder(config)


async def test_a_wrong_pinned_key_is_refused_before_any_prompt(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD
) -> None:
    calls: list[str] = []
    other = PublicKey(*_plain_host_key(local_cluster))
    config = mfa_config(
        local_cluster, sshd, public_key=other, prompt_handler=lambda p, e: calls.append(p) or ""
    )
    with pytest.raises(HostKeyError, match="does not match the pinned host_public_key"):
        async with SSHTransport(config) as transport:
            await transport.run("true")
    assert calls == [] and not ssh_session.paths_for(config)["sock"].exists()


@pytest.mark.parametrize("persist", ["0", "60"], ids=["in-process", "session-holder"])
def test_the_prompt_is_answered_on_the_terminal(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD, tmp_path: Path, persist: str
) -> None:
    # A process with a controlling terminal (a pty) and no prompt_handler: the prompt is written there, the
    # code typed there (not echoed); without a holder the process logs in itself, with one the holder does.
    code = (
        "import asyncio, json, sys\n"
        "from xm_slurm.ssh_config import SSHConfig, Endpoint, PublicKey\n"
        "from xm_slurm.transport import SSHTransport\n"
        "a = json.loads(sys.argv[1])\n"
        "c = SSHConfig(endpoints=[Endpoint('127.0.0.1', a['port'])], public_key=PublicKey(*a['key']),"
        " user=a['user'], client_keys=[a['client_key']], config_files=())\n"
        "async def main():\n"
        "    async with SSHTransport(c) as t:\n"
        "        print('LOGGED-IN-AS', (await t.run('id -un')).stdout.strip(), t.via_session, flush=True)\n"
        "asyncio.run(main())\n"
    )
    args = {
        "port": sshd.port,
        "key": list(sshd.host_key),
        "user": sshd.user,
        "client_key": local_cluster.ssh_key,
    }
    env = {**os.environ, "XM_SLURM_SSH_PERSIST": persist}
    before = accepted_second_factors(sshd)
    config = mfa_config(local_cluster, sshd)
    try:
        output, answer = _run_on_a_terminal(
            [sys.executable, "-c", code, json.dumps(args)], env, lambda: totp(sshd.secret_file)
        )
    finally:
        stop_session_holder(config)
    assert f"({sshd.user}@127.0.0.1:{sshd.port}) Verification code: " in output, output
    assert f"LOGGED-IN-AS {sshd.user} {persist != '0'}" in output, output
    assert answer not in output  # typed with echo off
    assert accepted_second_factors(sshd) == before + 1


def _run_on_a_terminal(argv: list[str], env: dict[str, str], code: Callable[[], str]) -> tuple[str, str]:
    """Run `argv` with a new pty as its controlling terminal; type `code()` when it asks. Returns what the
    terminal showed and the code typed."""
    master, slave = os.openpty()

    def take_the_terminal() -> None:  # in the child, after setsid: the pty becomes its controlling tty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(slave)
    seen, typed = b"", ""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                if b"Verification code: " in seen and not typed:
                    typed = code()
                    os.write(master, typed.encode() + b"\n")
            elif process.poll() is not None:
                break
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return seen.decode(errors="replace"), typed


async def test_a_transport_outlives_its_session_holder(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD
) -> None:
    # The holder ends (idle, cluster gone, killed): the next safe call logs in again, through a new holder.
    calls: list[str] = []

    def answer(prompt: str, echo: bool) -> str:
        calls.append(prompt)
        return totp(sshd.secret_file)

    config = mfa_config(local_cluster, sshd, prompt_handler=answer)
    before = accepted_second_factors(sshd)
    try:
        async with SSHTransport(config) as transport:
            assert (await transport.run("echo one", idempotent=True)).stdout == "one\n"
            first = stop_session_holder(config)
            assert first is not None
            assert (await transport.run("echo two", idempotent=True)).stdout == "two\n"
            assert transport.connects == 2 and transport.via_session
            assert stop_session_holder(config) not in (None, first)  # a new holder serves it
        assert len(calls) == 2 and accepted_second_factors(sshd) == before + 2
    finally:
        stop_session_holder(config)


async def test_streams_stopped_midway_leave_the_held_login_up(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD
) -> None:
    # A client closing a stream while its command still writes (`logs -f` stopped) must not end the one
    # cluster connection every process shares.
    config = mfa_config(local_cluster, sshd, prompt_handler=lambda prompt, echo: totp(sshd.secret_file))
    before = accepted_second_factors(sshd)
    try:
        async with SSHTransport(config) as transport:
            for _ in range(5):
                process = await transport.start("while :; do echo flowing; done")
                lines = process.lines()
                assert [await anext(lines) for _ in range(100)] == ["flowing"] * 100
                await process.aclose()
            assert (await transport.run("echo still-up")).stdout == "still-up\n"
            assert transport.connects == 1
        assert accepted_second_factors(sshd) == before + 1
    finally:
        stop_session_holder(config)


def test_an_unanswered_terminal_prompt_times_out_and_gives_the_echo_back(
    local_cluster: LocalCluster, sshd: SecondFactorSSHD
) -> None:
    code = (
        "import asyncio, json, sys\n"
        "from xm_slurm.ssh_config import SSHConfig, Endpoint, PublicKey\n"
        "from xm_slurm.transport import SSHTransport\n"
        "a = json.loads(sys.argv[1])\n"
        "c = SSHConfig(endpoints=[Endpoint('127.0.0.1', a['port'])], public_key=PublicKey(*a['key']),"
        " user=a['user'], client_keys=[a['client_key']], config_files=())\n"
        "async def main():\n"
        "    async with SSHTransport(c, prompt_timeout=2) as t:\n"
        "        await t.run('true')\n"
        "asyncio.run(main())\n"
    )
    args = {
        "port": sshd.port,
        "key": list(sshd.host_key),
        "user": sshd.user,
        "client_key": local_cluster.ssh_key,
    }
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(args)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "XM_SLURM_SSH_PERSIST": "0"},
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        started = time.monotonic()
        output = b""
        while process.poll() is None and time.monotonic() - started < 60:
            if select.select([master], [], [], 0.5)[0]:
                output += os.read(master, 4096)
        assert process.wait(timeout=10) != 0
        assert termios.tcgetattr(slave)[3] & termios.ECHO, "the terminal was left without echo"
    finally:
        os.close(slave)
        os.close(master)
    text = output.decode(errors="replace")
    assert "Verification code: " in text and "no answer to the keyboard-interactive prompt" in text, text
    assert time.monotonic() - started < 30
