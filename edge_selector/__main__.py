"""``python -m edge_selector``: the ``edge-selector`` command."""

from edge_selector.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
