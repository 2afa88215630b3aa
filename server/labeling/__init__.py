"""Labeling: label tasks handed out by a pool strategy under leases, labels with corrections,
exports (JSONL, COCO, Label Studio) and statistics. See docs/labeling.md.

- :class:`LabelStore`: ``lease``, ``renew``, ``release``, ``label``, ``current_label``,
  ``history``, ``current_labels``, ``class_names``, ``register_class_names``; a frame its
  labeler released (skipped) is kept from that labeler for :data:`SKIP_COOLDOWN_S`.
- :mod:`server.labeling.exports`: :func:`exported_labels`, :func:`to_jsonl`, :func:`to_coco`,
  :func:`to_labelstudio`, :func:`label_stats`.

The tables come with the catalog's migrations (``catalog.0003_labeling``).
"""

from server.labeling.errors import LeaseConflict, UnknownClassName
from server.labeling.exports import (
    EXPORT_FORMATS,
    ExportedLabel,
    exported_labels,
    label_stats,
    to_coco,
    to_jsonl,
    to_labelstudio,
)
from server.labeling.pool import FALLBACK_STRATEGY
from server.labeling.rows import LabelRow, LabelTask, Lease, image_path
from server.labeling.store import MAX_LEASE_COUNT, MAX_LEASE_S, SKIP_COOLDOWN_S, LabelStore

__all__ = [
    "EXPORT_FORMATS",
    "FALLBACK_STRATEGY",
    "MAX_LEASE_COUNT",
    "MAX_LEASE_S",
    "SKIP_COOLDOWN_S",
    "ExportedLabel",
    "LabelRow",
    "LabelStore",
    "LabelTask",
    "Lease",
    "LeaseConflict",
    "UnknownClassName",
    "exported_labels",
    "image_path",
    "label_stats",
    "to_coco",
    "to_jsonl",
    "to_labelstudio",
]
