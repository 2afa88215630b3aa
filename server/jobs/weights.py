"""Where a model version's trained weights are: the job that trained it records the blob key.

A fine-tuning run stores its state dict as a blob, records the key on its job row
(:func:`record_weights`, column ``weights_blob``, ``catalog.0006_job_weights``) and only then
registers the model version for its snapshot. A worker that dies after registering but before
finishing leaves both behind: the re-run finds the version (``JobContext.existing_model``) and
the weights (:func:`weights_of`) and trains nothing. The next run starts from the promoted
version's weights, found the same way (the job and the version share the snapshot key).
"""

from __future__ import annotations

import sqlite3

from curator.errors import InvalidInputError

__all__ = ["record_weights", "weights_of"]


def record_weights(conn: sqlite3.Connection, job_id: str, owner: str, blob_key: str) -> bool:
    """Record ``blob_key`` as the weights of ``job_id``, while ``owner`` holds its lease.

    Returns:
        False when ``owner`` no longer holds the job (nothing written).

    Raises:
        InvalidInputError: ``blob_key`` is empty, absolute or climbs out with ``..``.
    """
    if (
        not isinstance(blob_key, str)
        or not blob_key
        or blob_key.startswith("/")
        or (".." in blob_key)
    ):
        raise InvalidInputError(f"blob_key must be a relative blob key, got {blob_key!r}")
    cursor = conn.execute(
        "UPDATE jobs SET weights_blob = ? WHERE job_id = ? AND status = 'running'"
        " AND lease_owner = ?",
        (blob_key, job_id, owner),
    )
    return cursor.rowcount == 1


def weights_of(conn: sqlite3.Connection, model_version: str) -> str | None:
    """The blob key of ``model_version``'s weights: recorded by the job of the version's
    snapshot (whether or not that job finished), or None (a model registered by hand)."""
    row = conn.execute(
        "SELECT j.weights_blob FROM model_versions m JOIN jobs j ON j.snapshot_key ="
        " m.snapshot_key WHERE m.model_version = ? AND j.weights_blob IS NOT NULL",
        (model_version,),
    ).fetchone()
    return None if row is None else str(row[0])
