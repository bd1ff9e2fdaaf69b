"""`python -m tests.support.serve_cli ARGS`: `floorconsole serve ARGS` through the CLI once
cli.py registers `serve`, and through floorconsole.serve's own parser until then."""

from __future__ import annotations

import argparse
import sys


def cli_has(command: str) -> bool:
    """Whether `floorconsole COMMAND` is registered in floorconsole.cli."""
    from floorconsole.cli import build_parser

    return any(
        isinstance(a, argparse._SubParsersAction) and command in a.choices
        for a in build_parser()._actions
    )


def main(argv: list[str]) -> int:
    if cli_has("serve"):
        from floorconsole.cli import main as cli_main

        return cli_main(["serve", *argv])
    from floorconsole import serve

    parser = argparse.ArgumentParser(prog="floorconsole")
    serve.add_parser(parser.add_subparsers())
    return serve.run(parser.parse_args(["serve", *argv]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
