import numpy as np
import pytest
import torch

from mcinr_bids.methods.inr.encodings import (
    FourierEncoding,
    GridEncoding,
    build_encoding,
    sample_volume,
)
from mcinr_bids.methods.inr.model import build_model
from mcinr_bids.methods.inr.settings import settings_for_preset


def test_fourier_features_are_the_papers():
    encoding = FourierEncoding(256, 4.0, torch.Generator().manual_seed(0))
    assert encoding.frequencies.shape == (256, 3)
    assert abs(float(encoding.frequencies.std()) - 4.0) < 0.3
    x = torch.tensor([[0.1, -0.2, 0.3]])
    projection = 2 * np.pi * x @ encoding.frequencies.T
    expected = torch.cat([torch.cos(projection), torch.sin(projection)], 1)
    torch.testing.assert_close(encoding(x), expected)
    assert "frequencies" in encoding.state_dict()  # B is saved with the model


def linear_volume(encoding, level, coefficients):
    """Fill a dense level (1, Z, Y, X) with c0 * x + c1 * y + c2 * z of the vertex indices."""
    n0, n1, n2 = (int(v) for v in encoding.resolutions[level])
    z, y, x = torch.meshgrid(torch.arange(n2), torch.arange(n1), torch.arange(n0),
                             indexing="ij")
    with torch.no_grad():
        encoding.tables[level][0] = (coefficients[0] * x + coefficients[1] * y
                                     + coefficients[2] * z).float()
    return n0, n1, n2


@pytest.mark.parametrize("sampling", ["volume", "rows"])
def test_dense_level_interpolates_trilinearly(sampling):
    """Both ways of reading a dense level (grid_sample on CPU/CUDA, vertex rows on MPS) give the
    trilinear interpolation, clamped to the border beyond the grid."""
    encoding = GridEncoding([10, 10, 10], [1.0], grid_features=1)
    if sampling == "rows":
        encoding.volume_sampling_devices = ()
    n0, n1, n2 = linear_volume(encoding, 0, (1, 2, 3))
    x = torch.rand(200, 3) * 2.4 - 1.2
    position = (x.clamp(-1, 1) + 1) / 2 * (torch.tensor([n0, n1, n2]) - 1)
    expected = position[:, 0] + 2 * position[:, 1] + 3 * position[:, 2]
    torch.testing.assert_close(encoding(x)[:, 0], expected, atol=1e-4, rtol=1e-5)


def test_volume_sampling_in_parts_equals_one_call():
    """The CPU path splits the points into one batch per thread (padding the last): the same
    features and the same gradient of the volume as one grid_sample call."""
    volume = torch.randn(2, 7, 9, 11, requires_grad=True)
    points = torch.rand(3 * 4096 + 5, 3) * 2 - 1
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        features = sample_volume(volume, points)
    finally:
        torch.set_num_threads(threads)
    (gradient,) = torch.autograd.grad((features * points[:, :2]).sum(), volume)
    expected = torch.nn.functional.grid_sample(
        volume[None], points.view(1, 1, 1, -1, 3), align_corners=True,
        padding_mode="border").view(2, -1).T
    (expected_gradient,) = torch.autograd.grad((expected * points[:, :2]).sum(), volume)
    assert features.shape == (len(points), 2)
    torch.testing.assert_close(features, expected)
    torch.testing.assert_close(gradient, expected_gradient)


def test_fine_levels_are_hashed_into_a_bounded_table():
    encoding = GridEncoding([200, 200, 200], [16.0, 1.0], grid_features=2,
                            hash_table_log2=12)
    assert encoding.hashed == [False, True]
    assert [tuple(t.shape) for t in encoding.tables] == [(2, 14, 14, 14), (2**12, 2)]
    features = encoding(torch.rand(64, 3) * 2 - 1)
    assert features.shape == (64, 4)
    features.sum().backward()
    assert all(t.grad.abs().sum() > 0 for t in encoding.tables)


def test_dense_tables_saved_as_rows_load_as_volumes():
    """Models saved before the tables became volumes ((vertices, F) rows, x fastest) load and
    give the same features."""
    encoding = GridEncoding([30, 20, 10], [4.0, 2.0], grid_features=2)
    with torch.no_grad():
        for table in encoding.tables:
            table.copy_(torch.randn_like(table))
    points = torch.rand(100, 3) * 2 - 1
    rows = {f"tables.{i}": t.detach().reshape(2, -1).T.clone()
            for i, t in enumerate(encoding.tables)}
    loaded = GridEncoding([30, 20, 10], [4.0, 2.0], grid_features=2)
    loaded.load_state_dict({**encoding.state_dict(), **rows})
    torch.testing.assert_close(loaded(points), encoding(points))


def test_models_give_one_output_per_image():
    for model in ("split", "vanilla", "single"):
        settings = settings_for_preset("fast", model=model)
        network = build_model(3, settings, np.array([50.0, 60.0, 40.0]))
        assert network(torch.zeros(5, 3)).shape == (5, 3)
    paper = build_model(2, settings_for_preset("paper"), np.array([50.0, 60.0, 40.0]))
    widths = [m.out_features for m in paper.trunk if isinstance(m, torch.nn.Linear)]
    assert widths == [1024] * 5 and len(paper.heads) == 2


def test_diffusion_fills_unobserved_vertices_and_keeps_a_linear_field():
    """One heat-equation step moves a vertex `rate` of the way to its neighbours' mean: a spike
    spreads to its six neighbours, the total is conserved (no flux across the faces), a linear
    field is left as it is inside the grid, and hashed levels are not touched."""
    encoding = GridEncoding([10, 10, 10], [2.0, 1.0], grid_features=1, hash_table_log2=9)
    assert encoding.hashed == [False, True]
    hashed_before = encoding.tables[1].detach().clone()
    with torch.no_grad():
        encoding.tables[0].zero_()
        encoding.tables[0][0, 3, 3, 3] = 6.0
    encoding.diffuse_(0.5)
    volume = encoding.tables[0].detach()[0]
    assert float(volume[3, 3, 3]) == 3.0
    for offset in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
        ahead = tuple(3 + o for o in offset)
        behind = tuple(3 - o for o in offset)
        assert float(volume[ahead]) == 0.5 and float(volume[behind]) == 0.5
    assert abs(float(volume.sum()) - 6.0) < 1e-5
    torch.testing.assert_close(encoding.tables[1], hashed_before)

    linear_volume(encoding, 0, (1, 2, -1))
    before = encoding.tables[0].detach().clone()[0]
    encoding.diffuse_(1.0)
    after = encoding.tables[0].detach()[0]
    torch.testing.assert_close(after[1:-1, 1:-1, 1:-1], before[1:-1, 1:-1, 1:-1])


@pytest.mark.parametrize("encoding", ["grid", "fourier"])
def test_encodings_stay_fp32_under_autocast(encoding):
    """CUDA autocast runs matmuls in bf16; the encodings opt out (checked with CPU autocast)."""
    settings = settings_for_preset("fast" if encoding == "grid" else "paper")
    module = build_encoding(settings, np.array([250.0, 250.0, 250.0]),
                            generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for parameter in module.parameters():  # tables away from their tiny initial values
            parameter.copy_(torch.randn_like(parameter))
    points = torch.rand(4096, 3) * 2 - 1
    with torch.no_grad():
        reference = module(points)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            autocast = module(points)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, reference, rtol=1e-5, atol=1e-6)
