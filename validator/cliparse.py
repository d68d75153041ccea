"""Argument parsing shared by ``validate``, ``quantize`` and ``python -m validator.datasets``.

Why not plain argparse: its errors print the whole usage (15 lines for ``validate``) before the one line
that matters, and it checks required options before unknown ones, so ``quantize --modle x`` said
"required: --model" without naming ``--modle``. Here an unknown option or command is named first, with
the closest valid one, and every usage error is one line and a hint (exit 2), as input errors are.
"""

from __future__ import annotations

import argparse
import difflib
import sys


def closest(word: str, choices, n: int = 1) -> str | None:
    hits = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    return hits[0] if hits else None


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors, unknown options named (and the nearest valid one) before anything else."""

    def error(self, message: str):  # noqa: D401  argparse's hook
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _options(self) -> list[str]:
        return [o for a in self._actions for o in a.option_strings if o.startswith("--")]

    def unknown_options(self, argv: list[str]) -> str | None:
        """The first token that looks like a long option and is none of ours (nor a unique prefix of one)."""
        known = self._options()
        commands = {c for a in self._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices}
        for tok in argv:
            if tok == "--" or tok in commands:  # a subcommand's options are its own parser's to check
                break
            if not tok.startswith("--") or tok == "--":
                continue
            name = tok.split("=", 1)[0]
            if name in known:
                continue
            prefixed = [k for k in known if k.startswith(name)] if self.allow_abbrev else []
            if len(prefixed) == 1:
                continue
            near = closest(name, known)
            hint = f" (did you mean {near}?)" if near else ""
            return f"unknown option {name}{hint}"
        return None

    def parse_known_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        bad = self.unknown_options(argv)
        if bad:
            self.error(bad)
        return super().parse_known_args(argv, namespace)


def unknown_command(prog: str, word: str, commands: list[str], what: str = "command") -> int:
    """One line for a misspelt subcommand; returns the exit code (2)."""
    near = closest(word, commands)
    hint = f"did you mean '{near}'? " if near else ""
    print(f"{prog}: error: unknown {what} '{word}'; {hint}(see {prog} --help)", file=sys.stderr)
    return 2


def stdout_closed() -> None:
    """The reader of stdout went away (``validate history | head -3``): send the rest of this process's
    output to /dev/null so the interpreter's final flush does not raise (Python's documented recipe)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
