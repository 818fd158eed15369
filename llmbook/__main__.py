"""Command line: ``python -m llmbook <command> …`` (also installed as ``llmbook``).

Commands:
  doctor     check the installation: versions, device, Chinese font, data files
  train      train a model from a TOML config      (llmbook.cli)
  generate   sample text from a checkpoint          (llmbook.cli)
  eval       evaluate a checkpoint                   (llmbook.cli)
  serve      HTTP API for generation/classification (llmbook.serving.server)
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "doctor": ("llmbook.book.doctor", "check the installation: versions, device, font, data files"),
    "train": ("llmbook.cli", "train a model from a TOML config"),
    "generate": ("llmbook.cli", "generate text from a checkpoint"),
    "eval": ("llmbook.cli", "evaluate a checkpoint on held-out text"),
    "serve": ("llmbook.serving.server", "serve /generate and /classify over HTTP"),
}


def _usage() -> str:
    lines = ["usage: python -m llmbook <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `python -m llmbook <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"error: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[cmd][0])
    # doctor and serve take their own argv; llmbook.cli takes the sub-command name first.
    if COMMANDS[cmd][0] == "llmbook.cli":
        return int(module.main([cmd, *rest]) or 0)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
