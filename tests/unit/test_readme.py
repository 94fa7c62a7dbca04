"""The README and docs/: a short README, links that lead somewhere, and commands that run.

Checks the text only: every `localgen ...` line in a README or docs code block names a real
command and real options of it (click introspection, nothing is run), every relative link
and example path points to a file of the repository, and every page of docs/ is linked from
the README. It does not run the commands; `make demo` does that for the README's job.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from localgen.cli import cli

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 250  # the bound: a newcomer reads the README, the rest is in docs/

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
# [text](target) and ![alt](target), with an optional "title"; the target has no spaces.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
# `localgen SUB` where localgen is a command word: line start, or after a pipe, `;`, `&&`, `$(`.
INVOCATION = re.compile(r"(?:^|[|;&(]\s*)localgen\s+(.*)$")
SHELL_END = re.compile(r"\s(?:\||;|&&|\|\||>|2>|<)\s")


def code_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced code blocks."""
    return FENCE.findall(markdown)


def prose(markdown: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    return INLINE_CODE.sub("", FENCE.sub("", markdown))


def shell_lines(block: str) -> list[str]:
    """A code block as shell command lines: continuations joined, comments removed."""
    joined = re.sub(r"\\\n", " ", block)
    lines = []
    for line in joined.splitlines():
        # A comment starts at a `#` at the line start or after a space (not inside a word).
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if line:
            lines.append(line)
    return lines


def invocations(block: str) -> list[list[str]]:
    """Every `localgen ...` call in a code block, as its argument words (without `localgen`)."""
    calls = []
    for line in shell_lines(block):
        for found in INVOCATION.finditer(line):
            rest = SHELL_END.split(" " + found.group(1) + " ", maxsplit=1)[0]
            calls.append(shlex.split(rest))
    return calls


def command_problems(words: list[str], group: click.Group = cli) -> list[str]:
    """What is wrong with one call: an unknown command, or an option its command lacks."""
    command: click.Command = group
    path = ["localgen"]
    rest = list(words)
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            break  # `localgen --help`, `localgen models --help`: options of the group itself
        name = rest.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            return [f"`{' '.join(path)} {name}` is not a command"]
        command, path = sub, [*path, name]
    known = {"--help", "-h"}
    for param in command.params:
        known.update(param.opts)
        known.update(param.secondary_opts)
    problems = []
    for word in rest:
        if word == "--" or not re.match(r"^--?[A-Za-z]", word):
            continue  # an argument, a value or a placeholder such as `...`
        option = word.split("=", 1)[0]
        if option not in known:
            problems.append(f"`{' '.join(path)}` has no option {option}")
    return problems


def markdown_problems(markdown: str) -> list[str]:
    """Problems of every `localgen` call in the code blocks of one markdown text."""
    return [
        f"{' '.join(words)}: {problem}"
        for block in code_blocks(markdown)
        for words in invocations(block)
        for problem in command_problems(words)
    ]


def broken_links(page: Path, markdown: str | None = None) -> list[str]:
    """Relative link targets of a page, outside code, that name no existing file."""
    text = page.read_text() if markdown is None else markdown
    broken = []
    for target in LINK.findall(prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto: and anchors within the page are not files
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    return broken


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) < MAX_README_LINES, f"README.md has {len(lines)} lines; move a topic to docs/"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_that_exist(page: Path) -> None:
    assert broken_links(page) == []


def test_readme_links_every_page_of_docs() -> None:
    linked = {
        (ROOT / target.split("#")[0]).resolve() for target in LINK.findall(README.read_text())
    }
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


def test_every_localgen_command_in_the_readme_exists_with_its_options() -> None:
    readme = README.read_text()
    assert len([c for b in code_blocks(readme) for c in invocations(b)]) >= 5
    assert markdown_problems(readme) == []


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_localgen_command_in_the_docs_exists_with_its_options(page: Path) -> None:
    assert markdown_problems(page.read_text()) == []


def test_example_files_the_readme_names_exist() -> None:
    named = {
        path
        for block in code_blocks(README.read_text())
        for path in re.findall(r"\bexamples/[\w./-]+", block)
    }
    assert named, "the README's worked example names files under examples/"
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


# The checks above must be able to fail: each gets a planted mistake here.


def test_the_command_check_finds_a_wrong_option_and_a_wrong_command() -> None:
    bad = (
        "```bash\n"
        "localgen generate examples/support-tickets/task.toml --out runs/t \\\n"
        "    --no-such-option 3   # a comment with --not-checked\n"
        "localgen genrate task.toml\n"
        "localgen models bundle models/m --outt x.tar\n"
        "localgen show runs/t --json | jq .label\n"
        "```\n"
    )
    assert markdown_problems(bad) == [
        "generate examples/support-tickets/task.toml --out runs/t --no-such-option 3: "
        "`localgen generate` has no option --no-such-option",
        "genrate task.toml: `localgen genrate` is not a command",
        "models bundle models/m --outt x.tar: `localgen models bundle` has no option --outt",
    ]


def test_the_command_check_accepts_short_secondary_and_help_options() -> None:
    good = (
        "```bash\n"
        "localgen generate t.toml -o runs/t -n 5 --no-check-labels -q\n"
        "localgen --version\n"
        "localgen models --help\n"
        "```\n"
    )
    assert markdown_problems(good) == []


def test_the_link_check_finds_a_missing_file_and_ignores_urls_anchors_and_code(
    tmp_path: Path,
) -> None:
    (tmp_path / "here.md").write_text("x")
    page = tmp_path / "page.md"
    text = (
        "[ok](here.md#a) [gone](docs/nowhere.md) ![img](missing.png) [web](https://example.com)"
        " [anchor](#top) `[code](not-a-link.md)`\n```\n[block](also-not.md)\n```\n"
    )
    assert broken_links(page, text) == ["docs/nowhere.md", "missing.png"]
