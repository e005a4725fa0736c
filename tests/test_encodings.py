import numpy as np
import pytest
import torch

from mcinr_bids.inr.encodings import FourierEncoding, GridEncoding, build_encoding
from mcinr_bids.inr.model import build_model
from mcinr_bids.inr.settings import settings_for_preset


def test_fourier_features_are_the_papers():
    encoding = FourierEncoding(256, 4.0, torch.Generator().manual_seed(0))
    assert encoding.frequencies.shape == (256, 3)
    assert abs(float(encoding.frequencies.std()) - 4.0) < 0.3
    x = torch.tensor([[0.1, -0.2, 0.3]])
    projection = 2 * np.pi * x @ encoding.frequencies.T
    expected = torch.cat([torch.cos(projection), torch.sin(projection)], 1)
    torch.testing.assert_close(encoding(x), expected)
    assert "frequencies" in encoding.state_dict()  # B is saved with the model


def test_dense_level_interpolates_trilinearly():
    encoding = GridEncoding([10, 10, 10], [1.0], grid_features=1)
    n0, n1, n2 = (int(v) for v in encoding.resolutions[0])
    index = torch.arange(encoding.tables[0].shape[0])
    i0, i1, i2 = index % n0, (index // n0) % n1, index // (n0 * n1)
    with torch.no_grad():
        encoding.tables[0][:, 0] = (i0 + 2 * i1 + 3 * i2).float()
    x = torch.rand(200, 3) * 2 - 1
    position = (x + 1) / 2 * (torch.tensor([n0, n1, n2]) - 1)
    expected = position[:, 0] + 2 * position[:, 1] + 3 * position[:, 2]
    torch.testing.assert_close(encoding(x)[:, 0], expected, atol=1e-4, rtol=1e-5)


def test_fine_levels_are_hashed_into_a_bounded_table():
    encoding = GridEncoding([200, 200, 200], [16.0, 1.0], grid_features=2,
                            hash_table_log2=12)
    assert encoding.hashed == [False, True]
    assert [t.shape[0] for t in encoding.tables] == [14**3, 2**12]
    features = encoding(torch.rand(64, 3) * 2 - 1)
    assert features.shape == (64, 4)
    features.sum().backward()
    assert all(t.grad.abs().sum() > 0 for t in encoding.tables)


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
    n0, n1, _ = (int(v) for v in encoding.resolutions[0])
    hashed_before = encoding.tables[1].detach().clone()
    with torch.no_grad():
        encoding.tables[0].zero_()
        centre = 3 + n0 * 3 + n0 * n1 * 3
        encoding.tables[0][centre, 0] = 6.0
    encoding.diffuse_(0.5)
    table = encoding.tables[0].detach()[:, 0]
    assert float(table[centre]) == 3.0
    for offset in (1, n0, n0 * n1):
        assert float(table[centre + offset]) == 0.5 and float(table[centre - offset]) == 0.5
    assert abs(float(table.sum()) - 6.0) < 1e-5
    torch.testing.assert_close(encoding.tables[1], hashed_before)

    index = torch.arange(table.shape[0])
    i0, i1, i2 = index % n0, (index // n0) % n1, index // (n0 * n1)
    with torch.no_grad():
        encoding.tables[0][:, 0] = (i0 + 2 * i1 - i2).float()
    before = encoding.tables[0].detach().clone().view(-1, n1, n0)
    encoding.diffuse_(1.0)
    after = encoding.tables[0].detach().view(-1, n1, n0)
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
