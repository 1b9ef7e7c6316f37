import numpy as np
import pytest
import torch

from mgr.train.layout import CENTER_JOINT, EDGES, JOINT_NAMES, NUM_JOINTS, hop_distance, spatial_partition_adjacency
from mgr.train.model import FusionConfig, MicroGestureNet, check_modality


def test_body25_graph_is_a_connected_tree():
    assert NUM_JOINTS == len(JOINT_NAMES) == 25
    assert len(EDGES) == 24 and len(set(map(frozenset, EDGES))) == 24
    dist = hop_distance()
    assert (dist >= 0).all(), "every joint reachable from the neck"
    assert JOINT_NAMES[CENTER_JOINT] == "Neck" and dist[CENTER_JOINT] == 0
    assert dist[JOINT_NAMES.index("RWrist")] == 3


def test_spatial_partition_covers_each_edge_once_per_direction():
    parts = spatial_partition_adjacency()
    assert parts.shape == (3, 25, 25)
    total = parts.sum(axis=0)
    for a, b in EDGES:
        assert total[a, b] > 0 and total[b, a] > 0
    assert np.allclose(np.diag(parts[0]), np.diag(total)), "self loops in the root subset"
    # column-normalised: each column of the full (A + I) sums to 1
    assert np.allclose(total.sum(axis=0), 1.0)
    # neck -> shoulder is centrifugal from the neck's row perspective
    assert parts[2, 1, 2] > 0 and parts[1, 2, 1] > 0


@pytest.mark.parametrize("modality", ["fusion", "rgb", "skeleton"])
def test_forward_shapes_and_finite(modality):
    torch.manual_seed(0)
    net = MicroGestureNet(FusionConfig(modality=modality)).eval()
    rgb, sk = torch.randn(2, 4, 3, 224, 224), torch.randn(2, 3, 4, 25)
    with torch.no_grad():
        out = net(rgb=rgb, skeleton=sk)
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    head_in = net.head.net[0].in_features
    assert head_in == {"fusion": 640, "rgb": 512, "skeleton": 128}[modality]


def test_split_graphs_equal_whole_forward():
    torch.manual_seed(0)
    net = MicroGestureNet(FusionConfig()).eval()
    rgb, sk = torch.randn(3, 4, 3, 224, 224), torch.randn(3, 3, 4, 25)
    with torch.no_grad():
        whole = net(rgb=rgb, skeleton=sk)
        feats = net.encode_frames(rgb.flatten(0, 1)).view(3, 4, -1)
        split = net.classify(feats, sk)
    torch.testing.assert_close(whole, split)
    assert net.rgb.forward_features(rgb).shape == (3, 512)
    assert net.skeleton.forward_features(sk).shape == (3, 128)


def test_missing_input_and_unknown_modality_are_clear():
    with pytest.raises(ValueError, match="fusion, rgb, skeleton"):
        check_modality("depth")
    net = MicroGestureNet(FusionConfig(modality="fusion"))
    with pytest.raises(ValueError, match="rgb input"):
        net(skeleton=torch.zeros(1, 3, 4, 25))
    with pytest.raises(ValueError, match="no RGB stream"):
        MicroGestureNet(FusionConfig(modality="skeleton")).encode_frames(torch.zeros(1, 3, 224, 224))
