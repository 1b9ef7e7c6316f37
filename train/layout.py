"""The OpenPose Body_25 skeleton layout: the one place that names joints and edges.

The ST-GCN adjacency, the MediaPipe adapter and the overlay all read this module
(README "Architecture", contracts).
"""
from __future__ import annotations

from collections import deque

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye",
    "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
NUM_JOINTS = len(JOINT_NAMES)  # 25
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# OpenPose's render pairs for Body_25: a tree over the 25 joints.
EDGES: tuple[tuple[int, int], ...] = (
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11),
    (8, 12), (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18),
    (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)
CENTER_JOINT = JOINT_INDEX["Neck"]  # 1

# Joints that a seated interview shot (iMiGUE: upper body) shows; used by the overlay
# and the synthetic generator.
UPPER_BODY = tuple(JOINT_INDEX[n] for n in (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "LHip", "REye", "LEye", "REar", "LEar"))


def hop_distance(num_nodes: int = NUM_JOINTS, edges=EDGES, source: int = CENTER_JOINT) -> np.ndarray:
    """Graph distance of every joint from ``source`` (breadth-first search)."""
    neighbours: list[list[int]] = [[] for _ in range(num_nodes)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    dist = np.full(num_nodes, -1, dtype=np.int64)
    dist[source] = 0
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for v in neighbours[u]:
            if dist[v] < 0:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def spatial_partition_adjacency(num_nodes: int = NUM_JOINTS, edges=EDGES,
                                center: int = CENTER_JOINT) -> np.ndarray:
    """ST-GCN "spatial configuration" partition (Yan et al., AAAI 2018, section 3.3).

    Returns (3, V, V): root (self loops), centripetal (neighbour closer to the center),
    centrifugal (neighbour farther from it). Each subset is normalised by the in-degree
    of the full graph with self loops, as in the paper's A = Lambda^-1/2 (A+I) Lambda^-1/2,
    here in its column-normalised form used by the reference implementation.
    """
    dist = hop_distance(num_nodes, edges, center)
    if (dist < 0).any():
        raise ValueError(f"skeleton graph is not connected: joints {np.where(dist < 0)[0].tolist()} unreachable")
    adj = np.eye(num_nodes, dtype=np.float32)
    for a, b in edges:
        adj[a, b] = adj[b, a] = 1.0
    degree = adj.sum(axis=0)
    norm = adj / degree[None, :]  # column-normalised
    parts = np.zeros((3, num_nodes, num_nodes), dtype=np.float32)
    for i in range(num_nodes):
        for j in range(num_nodes):
            if adj[i, j] == 0:
                continue
            if dist[j] == dist[i]:
                parts[0, i, j] = norm[i, j]
            elif dist[j] < dist[i]:  # j is closer to the center than i: centripetal
                parts[1, i, j] = norm[i, j]
            else:
                parts[2, i, j] = norm[i, j]
    return parts
