import math

import pytest
import torch

from dmap.metrics import frechet_distance, psnr, ssim


def test_psnr_known_value():
    x = torch.zeros(2, 1, 8, 8)
    # an error of 0.1 in [-1, 1] is 0.05 on [0, 1]: MSE 0.0025, PSNR 26.02 dB
    assert psnr(x + 0.1, x).tolist() == pytest.approx([10 * math.log10(1 / 0.0025)] * 2, abs=1e-4)


def test_psnr_is_per_sample():
    x = torch.zeros(2, 1, 8, 8)
    y = x.clone()
    y[1] += 0.2
    p = psnr(y, x)
    assert p[0] > 150 and p[1] == pytest.approx(10 * math.log10(1 / 0.01), abs=1e-3)


def test_ssim_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 32, 32, generator=g) * 2 - 1
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3, abs=1e-6)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    noisier = (x + 0.6 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert (ssim(noisier, x) < ssim(noisy, x)).all() and (ssim(noisy, x) < 1).all()
    torch.testing.assert_close(ssim(noisy, x), ssim(x, noisy))
    # constant images: SSIM reduces to the luminance term (2 m1 m2 + c1) / (m1^2 + m2^2 + c1)
    a, b = torch.full((1, 1, 16, 16), 0.0), torch.full((1, 1, 16, 16), 0.5)  # 0.5 and 0.75 on [0, 1]
    c1 = 0.01**2
    assert float(ssim(a, b)) == pytest.approx((2 * 0.5 * 0.75 + c1) / (0.25 + 0.5625 + c1), abs=1e-6)


def test_frechet_distance_of_gaussians():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2 + torch.tensor([1.0, 0, 0], dtype=torch.float64)
    # closed form for N(0, I) vs N(m, 4 I): |m|^2 + tr(I + 4I - 2 * 2I) = 1 + 3
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.slow
def test_shipped_classifier_accuracy_and_fd():
    from dmap.classifier import predict
    from dmap.data import mnist
    from dmap.metrics import fd_mnist

    x, y = mnist("test")
    assert (predict(x) == y).float().mean() >= 0.98
    train = mnist("train")[0][:999]
    noisy = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    # real digits against real digits are far closer than noisy digits against real ones
    assert fd_mnist(train, x) < 0.2 * fd_mnist(noisy, x)


def test_ssim_matches_scikit_image():
    """Reference values from scikit-image 0.26 (computed once, stored here):
    ``structural_similarity(u, v, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1.0)`` on these [0, 1] images."""
    i, j = torch.meshgrid(torch.arange(32.0, dtype=torch.float64), torch.arange(32.0, dtype=torch.float64), indexing="ij")
    a = 0.5 + 0.4 * torch.sin(i / 3.0) * torch.cos(j / 5.0)
    b = (a + 0.15 * torch.sin(i * j / 7.0)).clamp(0, 1)
    c = (0.3 + 0.5 * torch.cos((i + 2 * j) / 4.0)).clamp(0, 1)
    reference = {(0, 1): 0.6393461086558557, (0, 2): 0.0071233257500670265, (1, 2): 0.01376561943336154}
    imgs = [v.reshape(1, 1, 32, 32) * 2 - 1 for v in (a, b, c)]  # to [-1, 1]
    for (p, q), value in reference.items():
        assert float(ssim(imgs[p], imgs[q])) == pytest.approx(value, abs=1e-9)
