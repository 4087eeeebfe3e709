"""Write the shipped weights of the `deblur-nonlinear` task from their seed.

python scripts/make_nonlinear_blur.py
"""

from pathlib import Path

from safetensors.torch import save_file

from dmap.operators.nonlinear_blur import nonlinear_blur_weights

out = Path(__file__).resolve().parent.parent / "src" / "dmap" / "assets" / "deblur_nonlinear.safetensors"
save_file({k: v.contiguous() for k, v in nonlinear_blur_weights().items()}, str(out))
print("wrote", out)
