"""mkdocs hooks: the command-line reference from vaejax's own argument parser."""

import argparse

MARKER = "<!-- cli-reference -->"


def _sections() -> str:
    from vaejax import cli  # noqa: PLC0415

    parser = cli._parser()
    parser.prog = "vaejax"
    out = ["```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                sub.prog = f"vaejax {name}"
                out += [f"## vaejax {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    return markdown.replace(MARKER, _sections()) if MARKER in markdown else markdown
