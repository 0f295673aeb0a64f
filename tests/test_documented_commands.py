"""The commands the README and docs show are the commands the CLI has, flag for flag.

Every ``pythonhosted COMMAND … --flag`` written in the docs names a command that exists and
flags it takes where they are written (``--log-json`` goes before the command: ``pythonhosted
serve --log-json`` is refused), and every flag of every command is named somewhere in the
docs. Read from click's own command tree, so a flag renamed or added on one side only fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click

from pythonhosted.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# `pythonhosted`, then words (options before the command, the command's path, arguments)
# up to the end of the command as written: a table cell, inline code or a comment ends it.
COMMAND_LINE = re.compile(r"(?<![\w/.-])pythonhosted((?: +[^\s|`#;)]+)+)")
FLAG = re.compile(r"^\[?(--[a-z][a-z0-9-]*)")


def _commands() -> dict[tuple[str, ...], click.Command]:
    context = click.Context(main)

    def walk(
        command: click.Command, path: tuple[str, ...]
    ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None
                yield from walk(sub, (*path, name))
        else:
            yield path, command

    return dict(walk(main, ()))


def _flags(command: click.Command) -> set[str]:
    return {
        flag
        for param in command.params
        if isinstance(param, click.Option)
        for flag in [*param.opts, *param.secondary_opts]
        if flag.startswith("--")
    }


COMMANDS = _commands()
GROUPS = {path[:n] for path in COMMANDS for n in (1, 2)} | {path[0] for path in COMMANDS}


def _written_commands() -> Iterator[tuple[str, list[str], list[str]]]:
    """(where, flags before the command, words after ``pythonhosted``) of each command line."""
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for found in COMMAND_LINE.finditer(line):
                words = found[1].split()
                before = []
                while words and words[0].startswith("--"):
                    before.append(words.pop(0))
                yield f"{doc.name}:{number}", before, words


def test_every_written_command_exists_and_takes_its_flags() -> None:
    wrong = []
    seen = 0
    for where, before, words in _written_commands():
        path = next(
            (tuple(words[:n]) for n in range(len(words), 0, -1) if tuple(words[:n]) in COMMANDS),
            None,
        )
        if path is None:
            if words and words[0] in GROUPS and tuple(words[:2]) not in GROUPS:
                wrong.append(f"{where}: no command {' '.join(words[:2])!r}")
            continue  # a group named alone, or prose: "pythonhosted is"
        seen += 1
        wrong += [f"{where}: {flag} is not an option of pythonhosted" for flag in before
                  if flag not in _flags(main)]  # fmt: skip
        for word in words[len(path) :]:
            flag = FLAG.match(word)
            if flag and flag[1] not in _flags(COMMANDS[path]):
                wrong.append(f"{where}: pythonhosted {' '.join(path)} has no {flag[1]}")
    assert wrong == []
    assert seen > 40  # the check read the docs' command lines


def test_every_flag_of_every_command_is_documented() -> None:
    """Each option, by one of its spellings (``--exclude-ci`` for ``--include-ci/--exclude-ci``,
    whose default is to include)."""
    docs = "\n".join(doc.read_text() for doc in DOCS)
    undocumented = [
        f"pythonhosted {' '.join(path)} {param.opts[-1]}"
        for path, command in COMMANDS.items()
        for param in command.params
        if isinstance(param, click.Option) and param.name != "help"
        if not any(
            re.search(rf"{re.escape(flag)}(?![\w-])", docs)
            for flag in [*param.opts, *param.secondary_opts]
            if flag.startswith("--")
        )
    ]
    assert undocumented == []
