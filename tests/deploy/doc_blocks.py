"""The code blocks of a Markdown page, and a shell session that runs them as a reader would.

Every fenced block of a page under test carries a directive, an HTML comment on the line just
above its opening fence (GitHub does not render it)::

    <!-- doc-test: run -->            bash, in the session; must exit 0 (``run exit=6``: 6)
    <!-- doc-test: file sync.env -->  the block's text is written to that file (an env file)
    <!-- doc-test: console -->        ``$ command`` lines are run; the lines shown after each
                                      must match its output (below)
    <!-- doc-test: background F -->  started in the background, its output going to file F
    <!-- doc-test: kubernetes -->     bash against a real API server (kubectl and helm)
    <!-- doc-test: skip <reason> -->  not run; the reason says what covers it instead

A block without a directive fails the test: a new block cannot slip in untested. A page is run
top to bottom in one session: the working directory and every exported variable carry over
from block to block, as in one terminal.

The test swaps a few literal values for what exists here (a server's address, a password that
would be typed at a prompt): ``Substitutions`` lists them, in order, and each must be used at
least once, so that the page and the test cannot drift apart silently.

Console output is matched line by line: runs of spaces match any whitespace, a line ending in
``…`` matches any line starting with what precedes it, and a line holding only ``…`` stands for
any number of lines.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DIRECTIVE = re.compile(r"^\s*<!-- doc-test: (\S+)(?: (.*?))? -->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,})")
KINDS = frozenset({"run", "file", "console", "background", "kubernetes", "skip"})


class UnmarkedBlock(AssertionError):
    """A fenced block without a ``doc-test`` directive."""


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    """1-based line of the opening fence, for messages."""
    kind: str
    argument: str
    text: str
    """The block's content, without the list indentation its fence has."""

    @property
    def where(self) -> str:
        return f"{self.doc.name}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """Every fenced block of ``doc`` with its directive, in order."""
    lines = doc.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks = len(fence.group(1)), fence.group(2)
        directive = DIRECTIVE.match(lines[i - 1]) if i else None
        if directive is None or directive.group(1) not in KINDS:
            raise UnmarkedBlock(f"{doc.name}:{i + 1}: a code block without <!-- doc-test: … -->")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{ticks}\s*$", lines[j]):
            line = lines[j]
            cut = len(line) - len(line.lstrip(" "))
            body.append(line[min(cut, indent) :])
            j += 1
        out.append(
            Block(doc, i + 1, directive.group(1), directive.group(2) or "", "\n".join(body) + "\n")
        )
        i = j + 1
    return out


@dataclass
class Substitutions:
    """Literal replacements, applied in order; ``unused()`` names those never applied."""

    pairs: Sequence[tuple[str, str]]
    used: set[str] = field(default_factory=set)

    def __call__(self, text: str) -> str:
        for old, new in self.pairs:
            if old in text:
                self.used.add(old)
                text = text.replace(old, new)
        return text

    def unused(self) -> list[str]:
        return [old for old, _ in self.pairs if old not in self.used]


def _pattern(expected: str) -> re.Pattern[str]:
    text = expected.rstrip()
    prefix = text.endswith("…")
    parts = [re.escape(p) for p in re.split(r"\s+", text.rstrip("…").strip())]
    return re.compile(r"\s*" + r"\s+".join(parts) + (r".*" if prefix else r"\s*"))


def match_output(expected: Sequence[str], actual: str) -> str | None:
    """``None`` when ``actual`` shows ``expected`` (the rules in the module docstring), else
    the first expected line that was not found where it should be."""
    lines = [line for line in actual.splitlines() if line.strip()]
    pos, gap = 0, False
    for want in (e for e in expected if e.strip()):
        if want.strip() == "…":
            gap = True
            continue
        pattern = _pattern(want)
        while pos < len(lines) and not pattern.fullmatch(lines[pos]):
            if not gap:
                return want
            pos += 1
        if pos == len(lines):
            return want
        pos, gap = pos + 1, False
    return None


@dataclass
class Session:
    """One shell session over a page: ``run`` keeps the working directory and the exported
    variables for the next call. Nothing of the test's own environment leaks in but ``env``."""

    workdir: Path
    env: Mapping[str, str]
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._state = self.workdir / ".doc-session"
        self._state.write_text(f"cd {shlex.quote(str(self.workdir))}\n")

    def run(self, script: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        state = shlex.quote(str(self._state))
        wrapped = (
            f"set -euo pipefail\n. {state}\n{script}\n"
            f'{{ export -p; echo cd "$(printf %q "$PWD")"; }} > {state}.new && '
            f"mv {state}.new {state}\n"
        )
        return subprocess.run(
            ["bash", "-c", wrapped], env=dict(self.env), capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, command: str, output: str, *, ready: str, timeout: float = 60) -> None:
        """``command`` in the background, its output in ``output`` (in the working directory),
        waited for until that output holds ``ready``."""
        log = self.workdir / output
        state = shlex.quote(str(self._state))
        proc = subprocess.Popen(
            ["bash", "-c", f". {state}\nexec {command} > {shlex.quote(str(log))} 2>&1"],
            env=dict(self.env), start_new_session=True,
        )  # fmt: skip
        self.background.append(proc)
        deadline = time.monotonic() + timeout
        while ready not in (log.read_text() if log.exists() else ""):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{command}: not ready ({proc.returncode}): {log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                proc.wait(10)
        self.background.clear()
