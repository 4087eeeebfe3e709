"""Train the shipped digit classifier behind ``fd-mnist`` on the *train* split.

    python scripts/train_classifier.py   # writes src/dmap/assets/mnist_classifier.safetensors

Prints the test accuracy (the target is at least 98 %).
"""

from pathlib import Path

import torch
from safetensors.torch import save_file

from dmap.classifier import train_classifier
from dmap.data import mnist

x, y = mnist("train")
net = train_classifier(x, y)
xt, yt = mnist("test")
with torch.no_grad():
    acc = (net(xt).argmax(1) == yt).float().mean().item()
out = Path(__file__).resolve().parent.parent / "src" / "dmap" / "assets" / "mnist_classifier.safetensors"
save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out), metadata={"test_accuracy": f"{acc:.4f}"})
print(f"test accuracy {acc:.4f} -> {out}")
