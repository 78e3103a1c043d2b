"""Keyboard-interactive logins (a second factor after the key, or alone) for the SSH transport.

Who answers a prompt, in this order: the `prompt_handler(prompt, echo)` of the cluster's SSH config; else the
terminal of this process (`/dev/tty`, as OpenSSH does); else nobody, which is an `AuthenticationError` naming
the site and what to do (a batch job or CI has no terminal). Each answer is bounded by `prompt_timeout`.

`LoginClient` is the asyncssh client of one connection attempt: it marks when the server starts
authentication (the handshake is done: failover time-outs stop there), answers prompts once per distinct
challenge (a challenge asked again means the answer was refused: it declines instead of answering until
sshd's MaxAuthTries), and records why a login failed so that the error says it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncssh

from xm_slurm.errors import AuthenticationError
from xm_slurm.ssh_config import Endpoint, SlurmSSHConfig

#: Seconds one prompt may wait for its answer (a person reading a code off a phone, or a callback).
PROMPT_TIMEOUT = 180.0
MAX_CHALLENGES = 4  # distinct challenges answered per login (password then code, ...): more is a loop

Prompts = Sequence[tuple[str, bool]]
#: Answers one challenge: (name, instructions, [(prompt, echo), ...]) -> one answer per prompt.
Answerer = Callable[[str, str, Prompts], Awaitable[list[str]]]
T = TypeVar("T")


class NoAnswer(AuthenticationError):
    """A prompt came and nothing can answer it (no prompt_handler, no terminal), or the answer failed."""


#: What to do when a prompt comes and nothing here can answer it.
WHAT_TO_DO = (
    "Answer it once in a terminal on this machine, with the same cluster config (run the launch script "
    "there, or `xm-slurm show <xid>` of an experiment on this cluster): xm_slurm keeps that login open "
    "for this machine's other processes until XM_SLURM_SSH_PERSIST seconds (600 by default) pass "
    "without one; or pass prompt_handler=lambda prompt, echo: ... in the cluster's SSHConfig"
)


def prompt_text(prompts: Prompts) -> str:
    return ", ".join(repr(p.strip()) for p, _ in prompts) or "(none)"


def make_answerer(config: SlurmSSHConfig, *, timeout: float = PROMPT_TIMEOUT) -> Answerer:
    """The answerer of this process for `config`: its prompt_handler, else the terminal, else an error."""

    async def answer(name: str, instructions: str, prompts: Prompts) -> list[str]:
        where = f"SSH server {config.destination}"
        try:
            if config.prompt_handler is not None:
                return await asyncio.wait_for(_by_handler(config, prompts), timeout)
            tty = _open_tty()
            if tty is None:
                raise NoAnswer(
                    f"{where} asks for a second factor (keyboard-interactive prompt {prompt_text(prompts)}) "
                    f"and this process has no terminal and no prompt_handler to answer it. {WHAT_TO_DO}"
                )
            return await asyncio.wait_for(_ask_tty(tty, where, name, instructions, prompts), timeout)
        except asyncio.TimeoutError:
            raise NoAnswer(
                f"{where}: no answer to the keyboard-interactive prompt {prompt_text(prompts)} within "
                f"{timeout:g} s; nothing ran on the cluster"
            ) from None
        except NoAnswer:
            raise
        except Exception as e:
            who = "the prompt_handler" if config.prompt_handler is not None else "the terminal"
            raise NoAnswer(
                f"{where}: {who} failed on prompt {prompt_text(prompts)}: {type(e).__name__}: {e}"
            ) from e

    return answer


async def _by_handler(config: SlurmSSHConfig, prompts: Prompts) -> list[str]:
    handler = config.prompt_handler
    assert handler is not None
    answers = []
    for prompt, echo in prompts:
        if inspect.iscoroutinefunction(handler):
            result = await handler(prompt, echo)
        else:  # a plain function may block (a hardware token, input()): off the event loop
            result = await in_daemon_thread(lambda p=prompt, e=echo: handler(p, e))  # type: ignore[misc]
            if inspect.isawaitable(result):
                result = await result
        if not isinstance(result, str):
            raise TypeError(f"prompt_handler returned {type(result).__name__}, not the answer as a str")
        answers.append(result)
    return answers


def _open_tty() -> int | None:
    """This process's controlling terminal, or None (no terminal: a batch job, CI, a daemon)."""
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None


async def _ask_tty(fd: int, where: str, name: str, instructions: str, prompts: Prompts) -> list[str]:
    """Ask on the terminal `fd` (and close it). Echo is switched here, on the event loop, so that a time-out
    or a Ctrl-C puts it back; only the blocking read of a line runs in a thread."""
    import termios  # POSIX only, and only when a terminal is there

    def write(text: str) -> None:
        os.write(fd, text.encode("utf-8", errors="replace"))

    def read_line() -> str:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 1)
            if not chunk:  # the terminal went away
                break
            data += chunk
        return data.decode("utf-8", errors="replace").rstrip("\r\n")

    reading = False
    try:
        for text in (name, instructions):
            if text.strip():
                write(text.rstrip("\n") + "\n")
        answers = []
        for prompt, echo in prompts:
            old = termios.tcgetattr(fd)
            try:
                # Echo off before the prompt shows, and without discarding input: a code typed as soon as
                # the prompt appears is read, not lost.
                if not echo:
                    new = termios.tcgetattr(fd)
                    new[3] &= ~termios.ECHO
                    termios.tcsetattr(fd, termios.TCSADRAIN, new)
                write(f"({where.removeprefix('SSH server ')}) {prompt}")
                reading = True
                answers.append(await in_daemon_thread(read_line))
                reading = False
            finally:
                termios.tcsetattr(fd, termios.TCSADRAIN, old)
                if not echo:
                    write("\n")
        return answers
    finally:
        if not reading:  # else the thread still reads it; it ends with the process
            os.close(fd)


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call in a daemon thread: one left waiting (a time-out) never holds up the exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = fn()
        except BaseException as e:  # handed to the awaiting task
            with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                loop.call_soon_threadsafe(settle, None, e)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="xm-slurm-prompt", daemon=True).start()
    return await future


class SecondFactorWanted(Exception):
    """Internal: the server at `endpoint` asks for keyboard-interactive and this attempt was told to leave
    it to a session holder (one login shared by this machine's processes)."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(str(endpoint))
        self.endpoint = endpoint


class LoginClient(asyncssh.SSHClient):
    """One connection attempt: see the module docstring. `answer` None: decline keyboard-interactive (and
    remember that the server asked for it)."""

    def __init__(self, answer: Answerer | None) -> None:
        self._answer = answer
        self.handshake_done = asyncio.Event()
        self.kbdint_asked = False
        self.challenges: list[tuple[str, ...]] = []
        self.refused_prompts: Prompts | None = None  # a challenge asked again: the answer was wrong
        self.error: BaseException | None = None

    def begin_auth(self, username: str) -> None:
        self.handshake_done.set()

    def kbdint_auth_requested(self) -> str | None:
        self.kbdint_asked = True
        return "" if self._answer is not None else None

    async def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Prompts
    ) -> list[str] | None:
        if not prompts:  # a message only (sshd sends one after the code): nothing to answer
            return []
        key = tuple(p for p, _ in prompts)
        if key in self.challenges or len(self.challenges) >= MAX_CHALLENGES or self._answer is None:
            self.refused_prompts = prompts
            return None  # decline: the server ends the login instead of asking until MaxAuthTries
        self.challenges.append(key)
        try:
            return await self._answer(name, instructions, prompts)
        except BaseException as e:
            self.error = e
            return None


def login_error(config: SlurmSSHConfig, client: LoginClient, refusal: asyncssh.PermissionDenied) -> Exception:
    """Why a login was refused, from what the attempt saw."""
    if client.error is not None:
        return client.error if isinstance(client.error, Exception) else NoAnswer(str(client.error))
    if client.refused_prompts is not None and client.challenges:
        return AuthenticationError(
            f"SSH server {config.destination} refused the answer to its keyboard-interactive prompt "
            f"{prompt_text(client.refused_prompts)} (a wrong or expired second factor). Nothing ran on the "
            "cluster: try again with the current code"
        )
    keys = ", ".join(config.client_keys) if config.client_keys else "your default keys / ssh-agent"
    return AuthenticationError(
        f"SSH server {config.destination} refused authentication ({refusal.reason}); tried {keys}. Check "
        "`user`, the IdentityFile in your ssh config or `client_keys`, and that the public key is in "
        "the server's authorized_keys"
    )
