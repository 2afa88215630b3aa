"""``python -m server``: the ``curator-server`` command."""

from server.cli import main

if __name__ == "__main__":  # worker processes (spawn) import this module again
    raise SystemExit(main())
