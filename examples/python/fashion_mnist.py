"""Fashion-MNIST from Debian's dataset-fashion-mnist package (the CLI's default data), as float
tensors in [0, 1]: images (N, 1, 28, 28) and labels (N,)."""

import gzip
import os

import numpy as np
import torch

FOLDER = "/usr/share/datasets/fashion-mnist"


def _read(name, offset):
    path = os.path.join(FOLDER, name)
    if not os.path.exists(path):
        raise SystemExit(f"{path}: not found (install it: apt-get install dataset-fashion-mnist)")
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load(split="train", count=None):
    prefix = "train" if split == "train" else "t10k"
    images = _read(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    labels = _read(f"{prefix}-labels-idx1-ubyte.gz", 8)
    if count is not None:
        images, labels = images[:count], labels[:count]
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))
