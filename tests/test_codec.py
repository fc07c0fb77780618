"""DSNTLabel: exact round trips, pixel-centre convention, visibility weights, sub-pixel heatmap targets."""
import re

import numpy as np
import pytest
import torch

import ipr_plugin  # noqa: F401  (registers the codec)
from ipr_plugin.ops import make_grid, soft_argmax
from mmpose.registry import KEYPOINT_CODECS


def build(**kwargs):
    return KEYPOINT_CODECS.build(dict(type='DSNTLabel', input_size=(192, 256), **kwargs))


def test_round_trip_is_exact():
    codec = build()
    rng = np.random.default_rng(0)
    kpts = rng.uniform(-0.5, [191.5, 255.5], size=(3, 17, 2))
    enc = codec.encode(kpts, np.ones((3, 17)))
    assert enc['keypoint_labels'].dtype == np.float32 and enc['keypoint_labels'].shape == (3, 17, 2)
    dec, scores = codec.decode(enc['keypoint_labels'])
    # float32 labels: the round trip is limited by float32 (|u| <= 1 -> 6e-8 * 128 px)
    np.testing.assert_allclose(dec, kpts, atol=1e-5)
    assert (scores == 1).all()


def test_pixel_centre_convention_and_flip():
    codec = build()
    w = 192
    enc = codec.encode(np.array([[[0.0, 0.0], [w - 1.0, 0.0], [37.25, 5.0]]]), None)
    u = enc['keypoint_labels'][0, :, 0]
    assert u[0] == pytest.approx(-1 + 1 / w) and u[1] == pytest.approx(1 - 1 / w)
    flipped = codec.encode(np.array([[[w - 1 - 37.25, 5.0]]]), None)['keypoint_labels'][0, 0, 0]
    assert flipped == pytest.approx(-u[2], abs=1e-7)


def test_weights_visible_and_inside():
    codec = build()
    kpts = np.array([[[10, 10], [10, 10], [-3, 10], [10, 300], [191.4, 255.4]]], dtype=np.float32)
    vis = np.array([[1, 0, 1, 1, 1]], dtype=np.float32)
    w = codec.encode(kpts, vis)['keypoint_weights']
    np.testing.assert_array_equal(w, [[1, 0, 0, 0, 1]])


def test_heatmaps_only_when_asked_and_sub_pixel():
    assert 'heatmaps' not in build().encode(np.zeros((1, 2, 2)), None)
    codec = build(heatmap_size=(48, 64), sigma=2.0)
    kpts = np.array([[[70.3, 101.7], [5.0, 9.0], [0.0, 0.0]]])
    enc = codec.encode(kpts, np.array([[1, 1, 0]]))
    hm = enc['heatmaps']
    assert hm.shape == (3, 64, 48) and hm.dtype == np.float32
    np.testing.assert_allclose(hm[:2].sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert hm[2].sum() == 0  # unlabelled keypoint: no target
    # the target's expectation is the exact sub-pixel label, not the centre of a whole cell
    coords = soft_argmax(torch.from_numpy(hm[:1]), make_grid(48), make_grid(64))
    np.testing.assert_allclose(coords.numpy(), enc['keypoint_labels'][0, :1], atol=1e-4)


def test_batch_decode_matches_decode():
    codec = build()
    coords = torch.rand(4, 1, 17, 2) * 2 - 1
    scores = torch.rand(4, 1, 17)
    kpts, sc = codec.batch_decode(coords, scores)
    assert len(kpts) == 4 and kpts[0].shape == (1, 17, 2)
    for b in range(4):
        ref, _ = codec.decode(coords[b].numpy())
        np.testing.assert_allclose(kpts[b], ref, atol=1e-4)
        np.testing.assert_allclose(sc[b], scores[b].numpy())


@pytest.mark.parametrize('kpts, vis, match', [
    (np.zeros((1, 17, 3)), None, r'keypoints.*\(1, 17, 3\)'),
    (np.zeros((17, 2)), None, r'keypoints.*\(17, 2\)'),
    (np.zeros((1, 17, 2)), np.ones((1, 16)), r'keypoints_visible.*\(1, 16\)'),
    (np.full((1, 17, 2), np.nan), None, r'keypoints.*\(1, 17, 2\).*NaN'),
])
def test_bad_input_names_the_culprit(kpts, vis, match):
    with pytest.raises(ValueError, match=match):
        build().encode(kpts, vis)


def test_no_instance_gives_empty_labels_and_zero_maps():
    enc = build(heatmap_size=(48, 64), sigma=2.0).encode(np.zeros((0, 3, 2)), np.zeros((0, 3)))
    assert enc['keypoint_labels'].shape == (0, 3, 2) and enc['keypoint_weights'].shape == (0, 3)
    assert enc['heatmaps'].shape == (3, 64, 48) and not enc['heatmaps'].any()


@pytest.mark.parametrize('kwargs', [dict(heatmap_size=(48, 64), sigma=0.0), dict(heatmap_size=(48, 0), sigma=2.0),
                                    dict(heatmap_size=(48, 64), sigma=-1.0)])
def test_bad_heatmap_config_fails_when_built(kwargs):
    with pytest.raises(ValueError, match=r'heatmap_size.*sigma'):
        build(**kwargs)


@pytest.mark.parametrize('input_size', [192, (192.7, 256), (0, 256), ('192', '256'), (True, 2), (192, 256, 3)])
def test_an_input_size_that_is_no_pair_of_whole_pixels_is_refused(input_size):
    """A bare 192 failed on len() with a TypeError; (192.7, 256) was cut to 192 without a word."""
    with pytest.raises(ValueError, match=r'`input_size` must be \(w, h\), two whole numbers of pixels > 0, got '):
        KEYPOINT_CODECS.build(dict(type='DSNTLabel', input_size=input_size))
    assert KEYPOINT_CODECS.build(dict(type='DSNTLabel', input_size=(192.0, np.int64(256)))).input_size == (192, 256)


def test_keys_of_an_inherited_codec_are_refused_naming_delete():
    """mmpose's IntegralRegressionLabel takes ``normalize``: a child config's codec merged into it passes it on."""
    with pytest.raises(TypeError, match=r"DSNTLabel got arguments it does not take: 'normalize'.*_delete_=True"):
        build(normalize=True)
    # what mmengine leaves where a dict had nothing to replace (a config without a base) is no leftover
    assert build(_delete_=True).input_size == (192, 256)


def test_bad_config():
    with pytest.raises(ValueError, match='sigma'):
        build(heatmap_size=(48, 64))


@pytest.mark.parametrize('use_udp', [False, True])
def test_a_perfect_prediction_lands_on_the_image_keypoint_with_and_without_udp(use_udp):
    """mmpose's real TopdownAffine (UDP or not), GenerateTarget, the head's decode and TopdownPoseEstimator's
    back-transform: the label itself, decoded, must give back the image keypoints. mmpose maps predictions back
    with the non-UDP formula; with use_udp the codec compensates, as mmpose's UDP codecs do."""
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS, TRANSFORMS
    init_default_scope('mmpose')
    w, h = 192, 256
    codec = dict(type='DSNTLabel', input_size=(w, h), use_udp=use_udp)
    model = MODELS.build(dict(type='TopdownPoseEstimator', backbone=dict(type='ResNet', depth=18),
                              head=dict(type='IPRHead', in_channels=512, in_featuremap_size=(6, 8), num_joints=3,
                                        decoder=codec)))
    kpts = np.array([[[110.0, 80.0], [200.0, 150.0], [290.0, 330.0]]], np.float32)  # image pixels, near the box edges
    results = dict(img=np.zeros((480, 640, 3), np.uint8), img_shape=(480, 640), ori_shape=(480, 640),
                   bbox=np.array([[100., 60., 300., 340.]], np.float32), bbox_score=np.ones(1, np.float32),
                   keypoints=kpts.copy(), keypoints_visible=np.ones((1, 3), np.float32), id=1, img_id=1,
                   category_id=1, flip_indices=[0, 1, 2])
    for t in (dict(type='GetBBoxCenterScale'), dict(type='TopdownAffine', input_size=(w, h), use_udp=use_udp),
              dict(type='GenerateTarget', encoder=codec), dict(type='PackPoseInputs')):
        results = TRANSFORMS.build(t)(results)
    sample = results['data_samples']
    labels = sample.gt_instance_labels.keypoint_labels.float()
    model.add_pred_to_datasample(model.head.decode((labels[None], torch.ones(1, 1, 3))), None, [sample])
    np.testing.assert_allclose(sample.pred_instances.keypoints[0], kpts[0], atol=2e-3)


def test_udp_decoding_scales_crop_pixels_by_w_over_w_minus_1():
    plain, udp = build(), build(use_udp=True)
    enc = np.array([[[0.5, -0.25]]], np.float32)
    (x, y), (xu, yu) = plain.decode(enc)[0][0, 0], udp.decode(enc)[0][0, 0]
    assert xu == pytest.approx(x * 192 / 191) and yu == pytest.approx(y * 256 / 255)
    batch = udp.batch_decode(torch.from_numpy(enc)[None])[0][0]
    np.testing.assert_allclose(batch, udp.decode(enc)[0], rtol=1e-6)
    with pytest.raises(ValueError, match='use_udp'):
        KEYPOINT_CODECS.build(dict(type='DSNTLabel', input_size=(1, 256), use_udp=True))


def gaussian_target(keypoint: np.ndarray, input_size: tuple, heatmap_size: tuple, sigma: float) -> np.ndarray:
    """(H, W) Gaussian of ``sigma`` cells at an input-pixel keypoint, by definition: sampled at the cell centres
    (cell j's centre is input pixel ``(j + 0.5) w / W - 0.5``), distances in cells, normalised to sum to 1."""
    (w, h), (W, H) = input_size, heatmap_size
    dx = ((np.arange(W) + 0.5) * w / W - 0.5 - keypoint[0]) * W / w
    dy = ((np.arange(H) + 0.5) * h / H - 0.5 - keypoint[1]) * H / h
    g = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def test_two_people_make_the_renormalised_per_cell_maximum_of_their_maps():
    """Joint 0 of two people 4 and 2.5 cells apart: overlapping Gaussians, whose per-cell maximum renormalised is
    neither their sum nor either one. Joint 1 is labelled for the first person only: its map is that person's."""
    input_size, heatmap_size, sigma = (192, 256), (48, 64), 2.0
    codec = build(heatmap_size=heatmap_size, sigma=sigma)
    kpts = np.array([[[60.0, 100.0], [30.0, 40.0]], [[75.5, 110.25], [150.0, 200.0]]])
    hm = codec.encode(kpts, np.array([[1.0, 1.0], [1.0, 0.0]]))['heatmaps']
    maps = [[gaussian_target(k, input_size, heatmap_size, sigma) for k in person] for person in kpts]
    joint0 = np.maximum(maps[0][0], maps[1][0])
    np.testing.assert_allclose(hm, np.stack([joint0 / joint0.sum(), maps[0][1]]), rtol=1e-5, atol=1e-9)


def test_visibility_counts_only_above_one_half():
    """The documented threshold: visibility > 0.5 is visible; 0.3 and 0.5 are not, and get neither weight nor
    heatmap target."""
    codec = build(heatmap_size=(48, 64), sigma=2.0)
    enc = codec.encode(np.full((1, 4, 2), 50.0), np.array([[0.3, 0.5, 0.51, 2.0]]))
    np.testing.assert_array_equal(enc['keypoint_weights'], [[0, 0, 1, 1]])
    np.testing.assert_array_equal(enc['heatmaps'].sum(axis=(1, 2)) > 0, [False, False, True, True])


def test_decode_returns_the_scores_it_is_given():
    scores = np.array([[0.25, 0.5, 0.75]], np.float32)
    _, decoded = build().decode(np.zeros((1, 3, 2), np.float32), scores)
    np.testing.assert_array_equal(decoded, scores)


EDGE_INPUT = (48, 64)


def test_a_keypoint_on_the_inputs_edge_is_inside():
    """The input spans [-0.5, w - 0.5] pixels, i.e. [-1, 1] inclusive; a hair beyond is outside."""
    codec = KEYPOINT_CODECS.build(dict(type='DSNTLabel', input_size=EDGE_INPUT))
    w, h = EDGE_INPUT
    kpts = np.array([[[-0.5, 10], [w - 0.5, 10], [10, -0.5], [10, h - 0.5], [-0.51, 10], [10, h - 0.49]]])
    enc = codec.encode(kpts)
    np.testing.assert_array_equal(enc['keypoint_weights'], [[1, 1, 1, 1, 0, 0]])


def test_batch_decode_without_scores_gives_ones():
    codec = KEYPOINT_CODECS.build(dict(type='DSNTLabel', input_size=EDGE_INPUT))
    _, scores = codec.batch_decode(torch.zeros(2, 1, 3, 2))
    assert len(scores) == 2 and all(s.shape == (1, 3) and (s == 1).all() for s in scores)


def test_nan_or_inf_at_an_invisible_keypoint_gets_weight_0_and_the_label_of_pixel_0():
    """NaN commonly marks a missing keypoint: where not visible it is no error. It gets what an unlabelled keypoint
    at pixel (0, 0) (mmpose's datasets' marker) gets, so no NaN reaches the labels or the heatmaps."""
    codec = build(heatmap_size=(48, 64), sigma=2.0)
    nan, inf = np.nan, np.inf
    kpts = np.array([[[nan, nan], [1.0, 1.0], [inf, 5.0]], [[3.0, nan], [-inf, inf], [40.0, 50.0]]])
    vis = np.array([[0.0, 1.0, 0.5], [0.2, 0.0, 1.0]])
    enc = codec.encode(kpts, vis)
    assert all(np.isfinite(v).all() for v in enc.values())
    np.testing.assert_array_equal(enc['keypoint_weights'], [[0, 1, 0], [0, 0, 1]])
    # the whole keypoint is replaced, not just its NaN coordinate: (3, NaN) is as missing as (NaN, NaN)
    ref = codec.encode(np.where(np.isfinite(kpts).all(axis=-1, keepdims=True), kpts, 0.0), vis)
    for key in ('keypoint_labels', 'keypoint_weights', 'heatmaps'):
        np.testing.assert_array_equal(enc[key], ref[key])
    np.testing.assert_allclose(enc['keypoint_labels'][0, 0], codec.encode(np.zeros((1, 1, 2)))['keypoint_labels'][0, 0])
    np.testing.assert_array_equal(enc['heatmaps'].sum(axis=(1, 2)) > 0, [False, True, True])  # joint 0: no one


@pytest.mark.parametrize('vis', [None, np.array([[1.0, 0.51, 0.0]])])
def test_nan_at_a_visible_keypoint_is_refused_naming_instance_and_keypoint(vis):
    kpts = np.array([[[1.0, 1.0], [2.0, np.nan], [np.nan, np.nan]]])
    with pytest.raises(ValueError, match=r'`keypoints` of shape \(1, 3, 2\) contains NaN or Inf at .*visible.*'
                                         r'instance 0, keypoint 1'):
        build().encode(kpts, vis)


@pytest.mark.parametrize('scores', [np.ones(4), np.ones((1, 3)), np.ones((2, 4)), np.ones((1, 4, 1))])
def test_decode_refuses_scores_not_shaped_like_the_keypoints(scores):
    """(K,) scores gave (K,) back, not the promised (N, K); a K mismatch went through without a word."""
    with pytest.raises(ValueError, match=rf'`scores` must have shape \(N, K\) = \(1, 4\).*got '
                                         rf'{re.escape(str(scores.shape))}'):
        build().decode(np.zeros((1, 4, 2)), scores)


@pytest.mark.parametrize('scores', [torch.ones(2, 4), torch.ones(2, 1, 3), torch.ones(3, 1, 4)])
def test_batch_decode_refuses_scores_not_shaped_like_the_coordinates(scores):
    with pytest.raises(ValueError, match=r'`batch_scores` must have shape \(B, N, K\) = \(2, 1, 4\)'):
        build().batch_decode(torch.zeros(2, 1, 4, 2), scores)


@pytest.mark.parametrize('method, args, name', [
    ('encode', (torch.zeros(1, 3, 2),), 'keypoints'),
    ('encode', (np.zeros((1, 3, 2)), torch.ones(1, 3)), 'keypoints_visible'),
    ('decode', (torch.zeros(1, 3, 2),), 'encoded'),
    ('decode', (np.zeros((1, 3, 2)), torch.ones(1, 3)), 'scores'),
])
def test_a_tensor_in_encode_or_decode_is_a_type_error_naming_the_argument(method, args, name):
    """mmpose codecs take numpy in encode/decode; a Tensor failed on ``.astype`` with an AttributeError."""
    with pytest.raises(TypeError, match=rf'DSNTLabel\.{method}: `{name}` must be a numpy array, got Tensor'):
        getattr(build(), method)(*args)


def test_a_nan_visibility_is_refused_not_read_as_invisible():
    codec = build()
    with pytest.raises(ValueError, match=r'`keypoints_visible` of shape \(1, 2\) contains NaN or Inf'):
        codec.encode(np.array([[[1.0, 2.0], [3.0, 4.0]]]), np.array([[1.0, np.nan]]))
