"""What ran, exactly: the provenance artifacts of an experiment (pure: parsing, capping, secret filtering).

At its first launch, an experiment records through the metadata store (as experiment artifacts, JSON text;
see docs/provenance.md):

* `xm_slurm.launch`: the command line, the launch script's text (capped at `SCRIPT_CAP` characters) and the
  versions of xm_slurm, xmanager and Python;
* `xm_slurm.code.<context>`: for each packaged build context that is in a git work tree, the commit, the
  branch, whether the context had uncommitted changes (dirty), the changed files and the diff of those
  changes against the commit (untracked files included; capped at `DIFF_CAP` characters, the cap stated in
  the artifact). A file whose name looks like a secret (`SECRET_FILE_PATTERNS`: .env, *.pem, *.key, id_*,
  ...) is left out of the diff; the artifact names it under `omitted`;
* `xm_slurm.images`: the pushed image (pinned by digest) of each executable;
* `xm_slurm.run_namespace`: the random part of every work unit's `XM_SLURM_RUN_ID`.

A later launch into the same experiment records what differs under a numbered name (`xm_slurm.launch.2`).
Every text is passed through `redact` with the launch's secret values (values marked `xm_slurm.Secret`,
registry passwords, the REST token) before it is stored.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xm_slurm.executables.secret import REDACTED
from xm_slurm.text_rules import MAX_TEXT

PREFIX = "xm_slurm."
LAUNCH = PREFIX + "launch"
IMAGES = PREFIX + "images"
CODE = PREFIX + "code."
NAMESPACE = PREFIX + "run_namespace"

#: Caps, in characters, of the diff and of the launch script kept in an artifact (an artifact holds at most
#: `text_rules.MAX_TEXT` = 100,000 characters, JSON escaping included).
DIFF_CAP = 50_000
SCRIPT_CAP = 50_000
#: At most this many changed files are listed (and diffed).
MAX_FILES = 1_000

#: File names (base names, shell patterns, case-insensitive) whose changes never reach an artifact.
SECRET_FILE_PATTERNS = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "id_*",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.kdbx",
    ".netrc",
    ".pgpass",
    ".pypirc",
    ".git-credentials",
    "credentials.json",
    "*secret*",
)
#: Secret values shorter than this are not searched for (a 1-character "secret" would blank out every text).
MIN_SECRET_CHARS = 4


def is_secret_file(path: str) -> bool:
    """Whether `path` (relative, `/`-separated) names a file that commonly holds a secret."""
    name = posixpath.basename(path.rstrip("/")).lower()
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_FILE_PATTERNS)


@dataclasses.dataclass(frozen=True)
class Change:
    """One entry of `git status --porcelain=v1 -z`: two status letters and the path (the new one for a
    rename or copy, with `source` the old one)."""

    status: str
    path: str
    source: str | None = None

    @property
    def untracked(self) -> bool:
        return self.status == "??"


def parse_status(output: str) -> list[Change]:
    """Parse `git status --porcelain=v1 -z` (paths relative to the work tree root, never quoted)."""
    entries = output.split("\0")
    changes: list[Change] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4 or entry[2] != " ":
            continue  # the empty string after the last NUL
        status, path = entry[:2], entry[3:]
        source = None
        if "R" in status or "C" in status:  # "R  new\0old\0"
            source = entries[i] if i < len(entries) else None
            i += 1
        changes.append(Change(status, path, source))
    return changes


def cap(text: str, limit: int, what: str) -> tuple[str, bool]:
    """`text` cut at the last line end within `limit` characters, with a note saying so; (text, cut?)."""
    if len(text) <= limit:
        return text, False
    cut = text.rfind("\n", 0, limit)
    kept = text[: cut + 1] if cut > limit // 2 else text[:limit]
    note = f"\n[xm_slurm: {what} cut at {limit:,} characters; {len(text) - len(kept):,} left out]\n"
    return kept + note, True


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value (longest first, so one that contains another goes whole) replaced."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def printable(text: str) -> str:
    """Control characters other than newline and tab shown as `\\xNN` (an artifact holds text only)."""
    return "".join(
        c if c in "\n\t" or (ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F) else f"\\x{ord(c):02x}"
        for c in text
    )


@dataclasses.dataclass(frozen=True)
class CodeState:
    """A build context's code as it was packaged."""

    context: str  # absolute path of the build context
    root: str  # the git work tree's top folder
    commit: str | None  # None: no commit yet
    branch: str | None  # None: detached HEAD
    changes: tuple[Change, ...] = ()
    diff: str = ""  # uncommitted changes of the non-secret files, against `commit` (already capped)
    diff_truncated: bool = False
    omitted: tuple[str, ...] = ()  # secret-looking changed files, left out of the diff
    note: str = ""

    @property
    def dirty(self) -> bool:
        return bool(self.changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "git_root": self.root,
            "commit": self.commit,
            "branch": self.branch,
            "dirty": self.dirty,
            "changed_files": sorted(c.path for c in self.changes),
            "omitted": list(self.omitted),
            "omitted_note": (
                f"{len(self.omitted)} changed file(s) whose name looks like a secret are left out of the "
                f"diff: {', '.join(self.omitted)}"
                if self.omitted
                else ""
            ),
            "diff": self.diff,
            "diff_cap": DIFF_CAP,
            "diff_truncated": self.diff_truncated,
            "note": self.note,
        }


def split_changes(changes: Sequence[Change]) -> tuple[list[Change], list[str]]:
    """The changes whose diff may be recorded, and the paths left out as secret-looking (a rename from or
    to such a name counts)."""
    kept, omitted = [], []
    for change in changes:
        names = [change.path, *([change.source] if change.source else [])]
        if any(is_secret_file(n) for n in names):
            omitted.append(change.path)
        else:
            kept.append(change)
    return kept, sorted(omitted)


def code_artifact_name(context: str) -> str:
    """`xm_slurm.code.<folder name>-<8 hex of the path>`: one per distinct context, a valid artifact name."""
    base = posixpath.basename(context.rstrip("/")) or "root"
    base = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[:80]
    return f"{CODE}{base}-{hashlib.sha256(context.encode()).hexdigest()[:8]}"


def to_text(value: Mapping[str, Any], secrets: Iterable[str]) -> str:
    """The artifact text of `value`: JSON with every secret value redacted, within an artifact's cap.

    Redaction runs on the JSON *and* on the strings inside it, so a secret is found whether or not JSON
    escaping changed its spelling."""
    secrets = list(secrets)
    clean = _redact_values(value, secrets)
    text = redact(json.dumps(clean, ensure_ascii=False, sort_keys=True), secrets)
    if len(text) > MAX_TEXT:  # escaping grew a capped text past the cap: cut the diff and script further
        for key in ("diff", "script"):
            if isinstance(clean.get(key), str) and clean[key]:
                excess = len(text) - MAX_TEXT + 200
                clean[key], _ = cap(clean[key], max(len(clean[key]) - 2 * excess, 0), key)
                clean[f"{key}_truncated"] = True
        text = redact(json.dumps(clean, ensure_ascii=False, sort_keys=True), secrets)
    return text


def _redact_values(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return printable(redact(value, secrets))
    if isinstance(value, Mapping):
        return {k: _redact_values(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_values(v, secrets) for v in value]
    return value


def unique_name(known: Mapping[str, str], base: str, text: str) -> str | None:
    """Where to record `text` under `base`: None if it is recorded already (same text), else `base` or the
    first free `base.N` (a later launch into the experiment with other code or another command line)."""
    name, n = base, 1
    while name in known:
        if known[name] == text:
            return None
        n += 1
        name = f"{base}.{n}"
    return name


def parse(uri: str) -> Any:
    """A provenance artifact's JSON (the text itself when it is not JSON)."""
    try:
        return json.loads(uri)
    except ValueError:
        return uri


def provenance_of(artifacts: Mapping[str, str]) -> dict[str, Any]:
    """The experiment's provenance artifacts, parsed, by name."""
    return {name: parse(uri) for name, uri in sorted(artifacts.items()) if name.startswith(PREFIX)}


def summary(artifacts: Mapping[str, str]) -> list[str]:
    """One line per provenance artifact, for `xm-slurm show`."""
    lines = []
    for name, value in provenance_of(artifacts).items():
        if not isinstance(value, Mapping):
            lines.append(f"{name}: {value}")
        elif name.startswith(CODE) and value.get("git") is False:
            lines.append(f"{name}: {value.get('context')} (not in a git work tree)")
        elif name.startswith(CODE):
            commit = (value.get("commit") or "no commit")[:12]
            state = "dirty" if value.get("dirty") else "clean"
            files = value.get("changed_files") or []
            more = f", {len(files)} changed file(s)" if files else ""
            cut = ", diff truncated" if value.get("diff_truncated") else ""
            omitted = (
                f", {len(value.get('omitted') or [])} secret file(s) left out" if value.get("omitted") else ""
            )
            where = value.get("context")
            lines.append(
                f"{name}: {where} @ {commit} ({value.get('branch') or 'detached'}, {state}{more}{cut}{omitted})"
            )
        elif name.startswith(LAUNCH):
            versions = value.get("versions") or {}
            argv = " ".join(value.get("argv") or [])
            lines.append(
                f"{name}: {argv} (xm_slurm {versions.get('xm_slurm')}, xmanager {versions.get('xmanager')})"
            )
        elif name.startswith(IMAGES):
            for image in value.get("images") or []:
                lines.append(f"{name}: {image.get('name')} = {image.get('image')}")
    return lines
