"""Latent diffusion priors: a diffusion model on the latents ``z`` of an autoencoder.

The prior's space is the latent space (``shape``, e.g. 4 x 64 x 64 for Stable Diffusion at
512 px); images are ``x = D(z) = vae.decode(z / scaling_factor)`` of ``image_shape``, and
``E(x) = scaling_factor * mean(vae.encode(x))``.  The solvers run in ``z`` on the
likelihood ``||y - A(D(z0_hat))||`` (:class:`~dmap.operators.physics.Physics` with the
decoder folded in, one code path for pixel and latent priors, see
:func:`dmap.api.run_method`) and return ``D(z)``.

Two networks come from diffusers folders (:func:`dmap.priors.diffusers.load_diffusers_prior`):
an unconditional ``UNet2DModel``, or a ``UNet2DConditionModel`` (Stable Diffusion's, and
the one ``dmap train --latent`` trains with a fixed empty condition) run as the paper does:
the empty prompt, no classifier-free guidance.  Its text embedding is read from a file (``dmap sd-embed`` makes it where
``transformers`` is installed), so the text encoder is not needed at run time.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from dmap.priors.base import Prior
from dmap.priors.network import NetworkPrior, autocast
from dmap.utils import WeightsError


class PromptUNet(nn.Module):
    """``net(z_t, t)`` from a ``UNet2DConditionModel`` with a fixed text embedding
    ``[1, L, D]`` (the empty prompt), broadcast over the batch."""

    def __init__(self, unet: nn.Module, embedding: Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.register_buffer("embedding", embedding)

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        context = self.embedding.to(z.dtype).expand(z.shape[0], -1, -1)
        return self.unet(z, t, encoder_hidden_states=context).sample


class LatentPrior(Prior):
    """``eps(z_t, t)`` of a network prior on latents, and the autoencoder ``vae`` (a
    diffusers ``AutoencoderKL``) that maps them to images (see the module docstring)."""

    latent = True

    def __init__(
        self, inner: NetworkPrior, vae: nn.Module, scaling_factor: float, image_shape: tuple[int, int, int], name: str
    ) -> None:
        super().__init__(inner.schedule, inner.shape)
        self.inner, self.vae, self.scaling_factor = inner, vae, float(scaling_factor)
        self._image_shape = tuple(image_shape)
        self.name = name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    @dtype.setter
    def dtype(self, value: torch.dtype) -> None:
        self.inner.dtype = value

    def eps(self, x_t: Tensor, t: Tensor | int) -> Tensor:
        return self.inner.eps(x_t, t)

    def decode(self, z: Tensor) -> Tensor:
        """``D(z) = vae.decode(z / scaling_factor)``: images ``[B, *image_shape]`` (not clipped)."""
        with autocast(z.device, self.dtype):
            return self.vae.decode(z.float() / self.scaling_factor).sample.float()

    def encode(self, x: Tensor) -> Tensor:
        """``E(x) = scaling_factor * mean(vae.encode(x))`` (the posterior mean, no sampling)."""
        with autocast(x.device, self.dtype):
            return self.vae.encode(x.float()).latent_dist.mean.float() * self.scaling_factor


def prompt_embedding(folder: str | Path, prompt: str = "") -> Tensor:
    """The text embedding ``[1, L, D]`` of ``prompt`` by the ``tokenizer/`` and
    ``text_encoder/`` of a Stable Diffusion folder (needs ``transformers``), as diffusers'
    Stable Diffusion pipelines encode it: ids padded to the tokenizer's maximum length (at most
    the encoder's positions), the
    text encoder's last hidden state.  ``dmap sd-embed`` stores it for ``--prior sd=FOLDER``."""
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError:
        raise WeightsError("dmap sd-embed needs transformers: pip install transformers") from None
    folder = Path(folder)
    for part in ("tokenizer", "text_encoder"):
        if not (folder / part).is_dir():
            raise WeightsError(f"{folder}: no {part}/ (a Stable Diffusion folder has tokenizer/ and text_encoder/)")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True).eval()
    length = min(tokenizer.model_max_length, encoder.config.max_position_embeddings)  # 77 for Stable Diffusion
    ids = tokenizer([prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return encoder(ids.input_ids)[0].float()
