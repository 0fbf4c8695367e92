"""The ``dashtrack`` command's entry point (``python run_stream.py`` in a clone): ``dashtrack fleet ...``
processes many drives on Ray (pipeline/fleet.py), anything else is one run (pipeline/cli.py).

Only the first word selects the fleet; ``--source fleet`` is a source like any other. Ray itself is imported
by the fleet only when drives are to run, so a single run never loads it.
"""
from __future__ import annotations

import sys

from . import cli, fleet

SUBCOMMANDS = {"fleet": fleet.main}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
