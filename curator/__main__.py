"""``python -m curator``: the ``curator`` command."""

from curator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
