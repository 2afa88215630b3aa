"""The cloud server: ingest, fleet-wide dedup, catalog, warehouse log, labeling and jobs.

It depends on ``curator`` and never on ``edge_selector``; its only contract with the devices is
:mod:`curator.wire`.
"""
