"""The catalog's tables, as named migrations (see docs/server-storage.md for the reasoning).

- ``frames``: one row per distinct image (``frame_id``) answered ``accepted`` or ``duplicate``,
  with the metadata of the upload that first carried it. ``ingest_seq`` (AUTOINCREMENT, never
  reused) is the 64-bit id of the frame in the vector index.
- ``uploads``: one row per (device_id, device_seq) answered ``accepted`` or ``duplicate`` and
  the frame it carried, so a re-sent upload gets the same answer, another image under a used
  sequence number is refused, and an image uploaded twice is recorded twice.
- ``embeddings``: vectors per (model_version, ingest_seq), so one frame may carry embeddings from
  several model versions (re-embedding) and a dedup index is rebuilt per version by a range scan.
- ``devices``: first/last seen and the highest sequence number per device.
- ``device_heartbeats`` (``catalog.0002``): every heartbeat a device sent
  (:class:`curator.wire.DeviceHeartbeat`), keyed by (device_id, sent_at) so a re-sent heartbeat
  is stored once; ``received_at`` is the server's time of the first arrival. ``latest_heartbeats``
  points at each device's newest ``sent_at``, so listing the fleet reads one row per device, not
  the whole history.
- ``label_leases``, ``labels``, ``model_class_names`` (``catalog.0003_labeling``, see
  docs/labeling.md): a lease per frame handed to a labeler (at most one open lease per frame,
  enforced by a partial unique index; an open lease past ``expires_at`` is swept to ``expired``
  before each lease), every label ever given (a correction is a new row whose ``supersedes`` is
  the label it corrects: nothing is overwritten), and the class names of a model version.
- ``jobs`` (``catalog.0005_jobs``, see docs/jobs.md): durable fine-tuning jobs, one per dataset
  snapshot (``snapshot_key`` UNIQUE), with status, attempts, lease and heartbeat;
  ``catalog.0006_job_weights`` adds ``weights_blob``, the blob key of the weights a job trained,
  recorded before its model version is registered (filled from older results' ``state_blob``).
"""

from __future__ import annotations

from server.db import Migration

__all__ = ["CATALOG_MIGRATIONS"]

_CREATE = """
CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE frames (
    ingest_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id TEXT NOT NULL UNIQUE CHECK (length(frame_id) = 64),
    device_id TEXT NOT NULL,
    device_seq INTEGER NOT NULL CHECK (device_seq >= 1),
    batch_id TEXT,
    captured_at TEXT,
    received_at TEXT NOT NULL,
    model_version TEXT,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'duplicate')),
    duplicate_of TEXT REFERENCES frames (frame_id) DEFERRABLE INITIALLY DEFERRED,
    similarity REAL,
    dedup_method TEXT CHECK (dedup_method IN ('exact', 'near')),
    dedup_threshold REAL,
    blob_key TEXT CHECK (blob_key NOT LIKE '/%' AND blob_key NOT LIKE '%..%'),
    image_format TEXT,
    width INTEGER,
    height INTEGER,
    image_bytes INTEGER,
    scores TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(scores)),
    quality TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(quality)),
    predicted_class INTEGER,
    class_probabilities TEXT CHECK (class_probabilities IS NULL OR json_valid(class_probabilities)),
    keep_reason TEXT,
    keep_value REAL,
    keep_threshold REAL,
    schema_version INTEGER NOT NULL,
    CHECK ((status = 'duplicate') = (duplicate_of IS NOT NULL AND similarity IS NOT NULL
                                     AND dedup_method IS NOT NULL)),
    CHECK (status != 'accepted' OR (blob_key IS NOT NULL AND model_version IS NOT NULL))
) STRICT;

CREATE UNIQUE INDEX frames_device_seq ON frames (device_id, device_seq);

CREATE TABLE uploads (
    device_id TEXT NOT NULL,
    device_seq INTEGER NOT NULL CHECK (device_seq >= 1),
    frame_id TEXT NOT NULL REFERENCES frames (frame_id),
    batch_id TEXT,
    received_at TEXT NOT NULL,
    PRIMARY KEY (device_id, device_seq)
) STRICT, WITHOUT ROWID;

CREATE INDEX uploads_frame_id ON uploads (frame_id);

CREATE TABLE embeddings (
    model_version TEXT NOT NULL,
    ingest_seq INTEGER NOT NULL REFERENCES frames (ingest_seq),
    embedding BLOB NOT NULL,
    embedding_dim INTEGER NOT NULL CHECK (embedding_dim >= 1),
    CHECK (length(embedding) = 4 * embedding_dim),
    PRIMARY KEY (model_version, ingest_seq)
) STRICT, WITHOUT ROWID;
"""

_DEVICE_HEARTBEATS = """
CREATE TABLE device_heartbeats (
    device_id TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    started_at TEXT NOT NULL,
    model_version TEXT,
    software_version TEXT NOT NULL,
    counters TEXT NOT NULL CHECK (json_valid(counters)),
    buffer_frames INTEGER NOT NULL CHECK (buffer_frames >= 0),
    buffer_bytes INTEGER NOT NULL CHECK (buffer_bytes >= 0),
    buffer_max_bytes INTEGER NOT NULL CHECK (buffer_max_bytes >= 0),
    last_device_seq INTEGER NOT NULL CHECK (last_device_seq >= 0),
    schema_version INTEGER NOT NULL,
    PRIMARY KEY (device_id, sent_at)
) STRICT, WITHOUT ROWID;

CREATE TABLE latest_heartbeats (
    device_id TEXT PRIMARY KEY,
    sent_at TEXT NOT NULL
) STRICT;
"""

_LABELING = """
CREATE TABLE label_leases (
    lease_id TEXT PRIMARY KEY,
    frame_id TEXT NOT NULL REFERENCES frames (frame_id),
    holder TEXT NOT NULL,
    leased_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    released_at TEXT,
    release_reason TEXT CHECK (release_reason IN ('released', 'labeled', 'expired')),
    strategy TEXT NOT NULL,
    model_version TEXT,
    CHECK ((released_at IS NULL) = (release_reason IS NULL))
) STRICT;

CREATE UNIQUE INDEX label_leases_open ON label_leases (frame_id) WHERE released_at IS NULL;

CREATE TABLE labels (
    label_id TEXT PRIMARY KEY,
    frame_id TEXT NOT NULL REFERENCES frames (frame_id),
    class_name TEXT NOT NULL CHECK (length(class_name) >= 1),
    model_version TEXT,
    labeler TEXT NOT NULL,
    created_at TEXT NOT NULL,
    supersedes TEXT UNIQUE REFERENCES labels (label_id),
    lease_id TEXT REFERENCES label_leases (lease_id)
) STRICT;

CREATE INDEX labels_frame ON labels (frame_id);

CREATE TABLE model_class_names (
    model_version TEXT PRIMARY KEY,
    class_names TEXT NOT NULL CHECK (json_valid(class_names)),
    recorded_at TEXT NOT NULL
) STRICT;
"""

_MODEL_REGISTRY = """
CREATE TABLE model_versions (
    model_version TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE CHECK (length(sha256) = 64),
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 1),
    blob_key TEXT NOT NULL CHECK (blob_key NOT LIKE '/%' AND blob_key NOT LIKE '%..%'),
    parent_version TEXT,
    snapshot_key TEXT UNIQUE,
    metrics TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
    created_at TEXT NOT NULL,
    promoted INTEGER NOT NULL DEFAULT 0 CHECK (promoted IN (0, 1)),
    promotion_seq INTEGER UNIQUE,
    gate_reason TEXT,
    CHECK ((promoted = 1) = (promotion_seq IS NOT NULL))
) STRICT;
"""

_JOBS = """
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (length(kind) >= 1),
    snapshot_key TEXT NOT NULL UNIQUE,
    label_watermark INTEGER NOT NULL CHECK (label_watermark >= 0),
    label_count INTEGER NOT NULL CHECK (label_count >= 0),
    params TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
    requested_by TEXT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner TEXT,
    lease_expires_at TEXT,
    heartbeat_at TEXT,
    created_at TEXT NOT NULL,
    dispatched_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    result TEXT CHECK (result IS NULL OR json_valid(result)),
    CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
) STRICT;

CREATE INDEX jobs_status_lease ON jobs (status, lease_expires_at);
"""

_JOB_WEIGHTS = """
ALTER TABLE jobs ADD COLUMN weights_blob TEXT
    CHECK (weights_blob IS NULL OR (weights_blob NOT LIKE '/%' AND weights_blob NOT LIKE '%..%'));

UPDATE jobs SET weights_blob = json_extract(result, '$.details.state_blob')
WHERE json_type(result, '$.details.state_blob') = 'text';
"""

CATALOG_MIGRATIONS: tuple[Migration, ...] = (
    Migration("catalog.0001_create", _CREATE),
    Migration("catalog.0002_device_heartbeats", _DEVICE_HEARTBEATS),
    Migration("catalog.0003_labeling", _LABELING),
    Migration("catalog.0004_model_registry", _MODEL_REGISTRY),
    Migration("catalog.0005_jobs", _JOBS),
    Migration("catalog.0006_job_weights", _JOB_WEIGHTS),
)
"""The catalog's migrations, in order; append new ones, never edit an applied one."""
