"""``python -m server``: the ``curator-server`` command."""

from server.cli import main

raise SystemExit(main())
