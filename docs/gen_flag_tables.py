"""Write the flag tables of ``docs/workflow.md`` from the scripts' argument parsers.

One job: keep the documented flags of ``train.py`` and ``evaluate.py`` equal to what
``--help`` says. The parsers are built from the config dataclasses (``utils.add_dataclass_arguments``:
a flag per field, the docstring under the field as help text, nested configs as groups of
their own), so the tables below are generated, not written: edit the field docstrings and run

    python docs/gen_flag_tables.py          # rewrite the tables in docs/workflow.md
    python docs/gen_flag_tables.py --check  # exit 1 (and say which) when they drifted

Each table lives between ``<!-- BEGIN GENERATED: <script> flags -->`` and
``<!-- END GENERATED: <script> flags -->``; everything outside the markers is left alone.
``tests/test_docs.py`` runs the check in-process.

Public names: ``SCRIPTS``, ``render``, ``render_script``, ``update``, ``drifted``, ``main``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import utils  # noqa: E402

DOC = REPO / "docs" / "workflow.md"


def _train_parser() -> argparse.ArgumentParser:
    import train

    return train.build_parser()[0]


def _evaluate_parser() -> argparse.ArgumentParser:
    import evaluate

    parser = evaluate.build_parser()
    evaluate.add_env_overrides(parser)
    return parser


SCRIPTS: dict[str, tuple[Callable[[], argparse.ArgumentParser], str]] = {
    "train.py": (_train_parser, "###"),
    "evaluate.py": (_evaluate_parser, "####"),
}
"""Script -> (its parser, the Markdown heading level of its flag groups in workflow.md)."""

_CODE_SPAN = re.compile(r"(`+[^`]*?`+)")


def _cell(text: str) -> str:
    """Table-cell text: ``|`` escaped, ``<``/``>`` escaped outside code spans (no stray HTML)."""
    parts = _CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts).replace("|", "\\|")


def render(parser: argparse.ArgumentParser, heading: str = "###") -> str:
    r"""Markdown tables of every flag of ``parser`` (flag, default, meaning), one per argument group.

    >>> p = argparse.ArgumentParser(allow_abbrev=False)
    >>> g = p.add_argument_group("run")
    >>> _ = g.add_argument("--out", default="a|b", help="folder <name>/")
    >>> print(render(p))
    ### run
    <BLANKLINE>
    | flag | default | meaning |
    |---|---|---|
    | `--out` | `a\|b` | folder &lt;name&gt;/ |
    """
    lines: list[str] = []
    group = None
    for title, flags, default, text in utils.flag_rows(parser):
        if title != group:
            group = title
            if lines:
                lines.append("")
            lines += [f"{heading} {title}", "", "| flag | default | meaning |", "|---|---|---|"]
        flag_cell = ", ".join(f"`{f}`" for f in flags.split(", "))
        lines.append(f"| {flag_cell} | {_cell(f'`{default}`')} | {_cell(text)} |")
    return "\n".join(lines)


def render_script(script: str) -> str:
    """The generated block of ``script`` (``"train.py"`` or ``"evaluate.py"``)."""
    build, heading = SCRIPTS[script]
    return render(build(), heading)


def _markers(script: str) -> tuple[str, str]:
    return f"<!-- BEGIN GENERATED: {script} flags -->", f"<!-- END GENERATED: {script} flags -->"


def update(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the content between each script's markers replaced by its block.

    Raises:
        ValueError: a script's markers are missing or out of order.
    """
    for script, block in blocks.items():
        begin, end = _markers(script)
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            raise ValueError(f"{DOC.name}: markers {begin!r} ... {end!r} not found (in that order)")
        text = f"{text[:i + len(begin)]}\n{block}\n{text[j:]}"
    return text


def drifted(doc: Path = DOC) -> list[str]:
    """The scripts whose tables in ``doc`` differ from what their parsers generate."""
    text = doc.read_text(encoding="utf-8")
    out = []
    for script in SCRIPTS:
        block = {script: render_script(script)}
        if update(text, block) != text:
            out.append(script)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the tables (or, with ``--check``, only compare); returns the exit code."""
    p = argparse.ArgumentParser(allow_abbrev=False, prog="gen_flag_tables.py", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="compare only; exit 1 when a table drifted")
    p.add_argument("--doc", type=Path, default=DOC, help="the Markdown file holding the markers")
    args = p.parse_args(argv)
    if args.check:
        bad = drifted(args.doc)
        if bad:
            print(f"{args.doc}: the flag tables of {', '.join(bad)} differ from the parsers; "
                  "run python docs/gen_flag_tables.py", file=sys.stderr)
            return 1
        return 0
    text = args.doc.read_text(encoding="utf-8")
    new = update(text, {s: render_script(s) for s in SCRIPTS})
    if new != text:
        utils.atomic_write_text(args.doc, new)
        print(f"updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
