"""The conditional score estimator of a latent prior as a diffusers ``ControlNetModel``,
the paper's own construction (Xu et al. 2025, Sec. 4, on Stable Diffusion):

    c      = A^T (A A^T + s^2 I)^-1 y,  s = max(sigma_y, 1e-3)   (the measurement brought back
                                          to image size, regularized: the raw pseudo-inverse
                                          amplifies noise where A is ill-conditioned)
    (r_1..r_L, r_mid) = ControlNet(z_t, t, context, c)           (made by
                                          ``ControlNetModel.from_unet``: a trainable copy of the
                                          prior UNet's encoder, zero-initialized outputs)
    eps(z_t, t, y) = UNet(z_t, t, context; + r_1..r_L, r_mid)    (the frozen prior)

At initialization every residual is zero, so the estimator equals the prior exactly.  The
control image enters at ``2^(n-1)`` times the latent size (``n`` conditioning-embedding
blocks, chosen so that this is the image size when the autoencoder's factor is a power of
two: 8 for Stable Diffusion, 4 for the digits).  Saved with ``save_pretrained`` in a folder,
with the :class:`~dmap.cse.adapter.AdapterMeta` in ``dmap_cse.json``.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor, nn

from dmap.cse.adapter import CSE, AdapterMeta, control_image
from dmap.operators.base import Operator
from dmap.priors.base import Prior
from dmap.priors.latent import LatentPrior, PromptUNet
from dmap.utils import WeightsError, read_json, write_json_atomic

META = "dmap_cse.json"
EMBEDDING_CHANNELS = (16, 32, 96, 256)  # diffusers' default conditioning embedding


def controllable(prior: Prior) -> bool:
    """Whether ``prior`` is a latent prior whose network a ControlNet can copy (a
    ``UNet2DConditionModel``, as Stable Diffusion's)."""
    return isinstance(prior, LatentPrior) and isinstance(prior.inner.net, PromptUNet)


def new_controlnet(prior: LatentPrior) -> nn.Module:
    """``ControlNetModel.from_unet`` for ``prior``, its control image at image size."""
    from diffusers import ControlNetModel

    factor = prior.image_shape[1] // prior.shape[1]
    n = int(math.log2(factor)) + 1
    if 2 ** (n - 1) != factor or n > len(EMBEDDING_CHANNELS):
        raise ValueError(f"the autoencoder's factor {factor} is not a power of two up to 8")
    return ControlNetModel.from_unet(
        prior.inner.net.unet, conditioning_channels=prior.image_shape[0], conditioning_embedding_out_channels=EMBEDDING_CHANNELS[:n]
    )


class ControlNetCSE(CSE):
    """A :class:`~dmap.cse.adapter.CSE` whose adapter is a diffusers ``ControlNetModel`` on
    a latent prior (see the module docstring)."""

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        inner = self.prior.inner
        unet = inner.net

        def controlled(z: Tensor, tt: Tensor) -> Tensor:
            context = unet.embedding.to(z.dtype).expand(z.shape[0], -1, -1)
            c = cond.expand(z.shape[0], *cond.shape[1:]).to(z)
            down, mid = self.adapter(z, tt, encoder_hidden_states=context, controlnet_cond=c, return_dict=False)
            return unet.unet(
                z, tt, encoder_hidden_states=context, down_block_additional_residuals=down, mid_block_additional_residual=mid
            ).sample

        return inner.run(controlled, x_t, t)

    def condition(self, operator: Operator, y: Tensor) -> Tensor:
        """The control image of ``y`` (``operator``: the task's, on images)."""
        return control_image(operator, y, self.meta.sigma_y)

    def save(self, path: str | Path) -> Path:
        """The ControlNet with ``save_pretrained`` into the folder ``path``, ``meta`` in ``dmap_cse.json``."""
        path = Path(path)
        self.adapter.save_pretrained(path)
        write_json_atomic(path / META, self.meta.to_dict())
        return path


def load_controlnet_cse(prior: Prior, path: str | Path) -> ControlNetCSE:
    """The ControlNet estimator saved in the folder ``path`` on ``prior``, unchecked
    (:func:`dmap.cse.load_cse` checks prior, task and noise)."""
    from diffusers import ControlNetModel

    path = Path(path)
    if not (path / META).is_file():
        raise WeightsError(f"{path}: not a ControlNet estimator folder (no {META}; make one with dmap train-cse)")
    meta = AdapterMeta.from_dict(read_json(path / META, META), META)
    try:
        net = ControlNetModel.from_pretrained(path, local_files_only=True, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: the ControlNetModel does not load ({e.__class__.__name__})") from None
    return ControlNetCSE(prior, net.eval(), meta)
