"""The pool strategy really spreads a batch: clusters of near-identical uncertain frames, and a
batch that top-k uncertainty would take from one cluster comes from all of them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from curator.selection.pool import select
from server.ingest import IngestService
from server.labeling import LabelStore

CLUSTERS, PER_CLUSTER, K = 4, 10, 8


def clustered(service: IngestService, kit: Any) -> tuple[dict[str, int], np.ndarray]:
    """frame_id -> cluster, and the probabilities in upload order. Every frame is uncertain
    (3 classes, top class 0.34-0.41); cluster 0 holds the 10 most uncertain ones."""
    records, cluster_of = [], {}
    for c in range(CLUSTERS):
        for j in range(PER_CLUSTER):
            n = 1 + c * PER_CLUSTER + j
            level = 0.34 + 0.001 * j if c == 0 else 0.36 + 0.005 * j
            records.append(kit.record(n, kit.near(c, n), kit.uncertain(n, level=level)))
    for fid, r in zip(kit.ingest(service, *records), records, strict=True):
        cluster_of[fid] = (r.device_seq - 1) // PER_CLUSTER
    return cluster_of, np.array([r.class_probabilities for r in records])


def test_a_batch_spreads_over_clusters_where_top_uncertainty_would_not(
    store: LabelStore, service: IngestService, kit: Any
) -> None:
    cluster_of, probs = clustered(service, kit)
    # the pool is hard: top-k entropy alone takes all K from cluster 0
    assert set(select("entropy", k=K, probs=probs).tolist()) <= set(range(PER_CLUSTER))
    tasks = store.lease("alice", count=K)
    per_cluster = Counter(cluster_of[t.frame_id] for t in tasks)
    assert len(tasks) == K
    assert set(per_cluster) == set(range(CLUSTERS)), per_cluster
    assert max(per_cluster.values()) <= K // 2, per_cluster  # top-k entropy: all K in one
    assert cluster_of[tasks[0].frame_id] == 0  # the most uncertain scene comes first


def test_the_next_batch_moves_away_from_frames_leased_to_a_colleague(
    store: LabelStore, service: IngestService, kit: Any
) -> None:
    cluster_of, _ = clustered(service, kit)
    (first,) = store.lease("alice", count=1)
    assert cluster_of[first.frame_id] == 0  # the most uncertain scene
    (second,) = store.lease("bob", count=1)
    assert cluster_of[second.frame_id] != 0  # alice is on that scene already


def test_frames_without_probabilities_fall_back_to_diversity(
    store: LabelStore, service: IngestService, kit: Any
) -> None:
    records = [kit.record(n, kit.near(n % 3, n), None, model="emb") for n in range(1, 10)]
    kit.ingest(service, *records)
    tasks = store.lease("alice", count=3)
    assert {t.lease.strategy for t in tasks} == {"kcenter"}
    assert {(t.predicted_index, t.confidence, t.class_names) for t in tasks} == {(None, None, ())}
    by_id = {r.frame_id: r.device_seq % 3 for r in records}
    assert {by_id[t.frame_id] for t in tasks} == {0, 1, 2}


def test_the_newest_model_versions_frames_come_first_then_older_ones(
    store: LabelStore, service: IngestService, kit: Any
) -> None:
    old = kit.ingest(service, *(kit.record(n, kit.near(n, n), kit.uncertain(n)) for n in (1, 2)))
    new = kit.ingest(
        service,
        *(kit.record(n, kit.near(n, n, 0.5), kit.uncertain(n), model="m2") for n in (3, 4, 5)),
    )
    tasks = store.lease("alice", count=4)
    assert [t.lease.model_version for t in tasks] == ["m2", "m2", "m2", "m1"]
    assert {t.frame_id for t in tasks[:3]} == set(new) and tasks[3].frame_id in old


def test_the_same_seed_gives_the_same_batch(service: IngestService, kit: Any, clock: Any) -> None:
    clustered(service, kit)
    batches = []
    for _ in range(2):
        store = LabelStore(service.catalog, clock=clock, rng=7)
        batches.append([t.frame_id for t in store.lease("alice", count=K, lease_s=1)])
        clock.advance(2)
    assert batches[0] == batches[1]
