"""Pixel <-> normalised coordinate conventions (ipr_plugin.ops.coords)."""
import numpy as np
import pytest
import torch

from ipr_plugin.ops import flip_coords, normalized_to_pixel, pixel_to_normalized

SIZE = (192, 256)  # (w, h), deliberately not square


def _random_pixels(n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-20, 300, size=(n, 2))


@pytest.mark.parametrize('to_container', [
    lambda a: a,
    lambda a: torch.from_numpy(a),
], ids=['numpy', 'torch'])
def test_round_trip_float64(to_container):
    xy = to_container(_random_pixels())
    uv = pixel_to_normalized(xy, SIZE)
    assert type(uv) is type(xy)
    back = normalized_to_pixel(uv, SIZE)
    assert type(back) is type(xy)
    np.testing.assert_allclose(np.asarray(back), np.asarray(xy), rtol=0, atol=1e-5)


def test_round_trip_torch_float32():
    xy = torch.rand(100, 2) * 60  # keep float32 ulp well below 1e-5 px
    back = normalized_to_pixel(pixel_to_normalized(xy, (48, 64)), (48, 64))
    assert back.dtype == torch.float32
    assert torch.allclose(back, xy, rtol=0, atol=1e-5)


def test_integer_pixels_are_not_truncated():
    uv = pixel_to_normalized(np.array([[0, 0]]), (4, 8))
    np.testing.assert_allclose(uv, [[-1 + 1 / 4, -1 + 1 / 8]])
    uv_t = pixel_to_normalized(torch.tensor([[0, 0]]), (4, 8))
    assert uv_t.is_floating_point()
    assert torch.allclose(uv_t, torch.tensor([[-0.75, -0.875]]))


def test_pixel_centres_of_the_edges():
    w, h = SIZE
    first = pixel_to_normalized(np.array([0.0, 0.0]), SIZE)
    last = pixel_to_normalized(np.array([w - 1.0, h - 1.0]), SIZE)
    np.testing.assert_allclose(first, [-1 + 1 / w, -1 + 1 / h], atol=1e-12)
    np.testing.assert_allclose(last, [1 - 1 / w, 1 - 1 / h], atol=1e-12)
    # The image borders (pixel edges) are exactly -1 and 1.
    np.testing.assert_allclose(pixel_to_normalized(np.array([-0.5, w - 0.5]).reshape(1, 2), (w, w)),
                               [[-1.0, 1.0]], atol=1e-12)


@pytest.mark.parametrize('as_torch', [False, True])
def test_horizontal_flip_is_negation(as_torch):
    w, _ = SIZE
    xy = _random_pixels()
    flipped = xy.copy()
    flipped[:, 0] = w - 1 - xy[:, 0]
    if as_torch:
        xy, flipped = torch.from_numpy(xy), torch.from_numpy(flipped)
    uv, uv_f = pixel_to_normalized(xy, SIZE), pixel_to_normalized(flipped, SIZE)
    np.testing.assert_allclose(np.asarray(uv_f[:, 0]), -np.asarray(uv[:, 0]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(uv_f[:, 1]), np.asarray(uv[:, 1]), atol=1e-12)


def test_per_sample_sizes_broadcast():
    xy = torch.tensor([[[10.0, 20.0]], [[10.0, 20.0]]])          # (N=2, K=1, 2)
    sizes = torch.tensor([[[100.0, 200.0]], [[50.0, 40.0]]])      # (N, 1, 2)
    uv = pixel_to_normalized(xy, sizes)
    assert torch.allclose(uv[0, 0], torch.tensor([21 / 100 - 1, 41 / 200 - 1]))
    assert torch.allclose(uv[1, 0], torch.tensor([21 / 50 - 1, 41 / 40 - 1]))
    assert torch.allclose(normalized_to_pixel(uv, sizes), xy)


def test_torch_gradients_flow():
    xy = torch.tensor([[3.0, 4.0]], requires_grad=True)
    pixel_to_normalized(xy, (8, 16)).sum().backward()
    assert torch.allclose(xy.grad, torch.tensor([[2 / 8, 2 / 16]]))


@pytest.mark.parametrize('as_torch', [False, True])
def test_flip_coords(as_torch):
    coords = np.array([[[0.1, 0.2], [0.3, 0.4], [-0.5, 0.6]]])  # (1, K=3, 2)
    flip_indices = [0, 2, 1]
    if as_torch:
        coords = torch.from_numpy(coords)
    out = flip_coords(coords, flip_indices)
    assert type(out) is type(coords)
    expected = np.array([[[-0.1, 0.2], [0.5, 0.6], [-0.3, 0.4]]])
    np.testing.assert_allclose(np.asarray(out), expected)
    np.testing.assert_allclose(np.asarray(flip_coords(out, flip_indices)), np.asarray(coords))
    # the permutation as an index tensor (the head keeps one on the device); no joints at all
    np.testing.assert_allclose(np.asarray(flip_coords(coords, torch.tensor(flip_indices))), expected)
    assert np.asarray(flip_coords(coords[:, :0], [])).shape == (1, 0, 2)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r'xy.*\(4, 3\)'):
        pixel_to_normalized(np.zeros((4, 3)), SIZE)
    with pytest.raises(ValueError, match=r'uv.*\(5,\)'):
        normalized_to_pixel(torch.zeros(5), SIZE)
    with pytest.raises(ValueError, match=r'coords.*\(2, 3, 2\)'):
        flip_coords(torch.zeros(2, 3, 2), [1, 0])


def test_flip_coords_of_integer_tensors_is_float():
    out = flip_coords(torch.tensor([[[3, 4], [5, 6]]]), [1, 0])
    assert out.is_floating_point()
    assert torch.equal(out, torch.tensor([[[-5.0, 6.0], [-3.0, 4.0]]]))


def test_flipped_maps_integrate_to_flipped_coordinates():
    """On the cell-centre grid, mirroring the maps and mirroring their soft-argmax agree (the flip test relies on
    it); joints are swapped as flip_coords swaps them; a wrong joint count is named."""
    from ipr_plugin.ops import flip_maps, make_grid, soft_argmax
    torch.manual_seed(0)
    maps = torch.randn(2, 4, 6, 8).softmax(-1)
    maps = maps / maps.sum((-2, -1), keepdim=True)
    swap = [1, 0, 2, 3]
    flipped = flip_maps(maps, swap)
    assert torch.equal(flipped[:, 0], maps[:, 1].flip(-1)) and torch.equal(flipped[:, 2], maps[:, 2].flip(-1))
    grids = make_grid(8), make_grid(6)
    torch.testing.assert_close(soft_argmax(flipped, *grids), flip_coords(soft_argmax(maps, *grids), swap))
    assert torch.equal(flip_maps(maps, torch.tensor(swap)), flipped)
    assert torch.equal(flip_maps(flipped, swap), maps)  # its own inverse
    with pytest.raises(ValueError, match=r'K = len\(flip_indices\) = 3, got \(2, 4, 6, 8\)'):
        flip_maps(maps, [0, 1, 2])


@pytest.mark.parametrize('size', [(0, 5), (4, -2)])
def test_a_size_that_is_no_size_is_refused(size):
    """A zero width gave inf, a negative one a mirrored map, without an error."""
    for convert in (pixel_to_normalized, normalized_to_pixel):
        with pytest.raises(ValueError, match=r'size must be \(w, h\) in pixels, each > 0'):
            convert(np.zeros((1, 2)), size)
