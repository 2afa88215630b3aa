"""The fleet demo (``curator demo``): the whole loop on real processes, against a random fleet.

Modules, one step each:

- :mod:`curator.demo.config`: :class:`DemoConfig`, one field per ``curator demo`` flag.
- :mod:`curator.demo.streams`: simulated cameras on Fashion-MNIST training images.
- :mod:`curator.demo.fleet`: the server, worker and token processes, and their cleanup.
- :mod:`curator.demo.cameras`: the curated fleet's ``edge-selector run`` processes.
- :mod:`curator.demo.uploads`: the seed set and the random fleet, uploaded through
  :mod:`curator.client`.
- :mod:`curator.demo.labeling`: the stand-in labelers.
- :mod:`curator.demo.rounds`: what is recorded per fleet and round.
- :mod:`curator.demo.run`: :func:`run_demo`, the rounds.
- :mod:`curator.demo.report`: ``report.json``, ``report.html`` and the PNG plots.

Needs the ``edge``, ``server``, ``train`` and ``notebooks`` extras (``make demo`` installs all)
and Fashion-MNIST (docs/data.md). docs/demo.md describes the flags and the report.
"""

from curator.demo.config import QUICK, DemoConfig
from curator.demo.rounds import DemoReport, FleetRound
from curator.demo.run import run_demo

__all__ = ["QUICK", "DemoConfig", "DemoReport", "FleetRound", "run_demo"]
