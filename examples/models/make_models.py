#!/usr/bin/python3
"""Writes TorchScript files of four well-known image classifiers for `twosed measure --model`.

  lenet5.pt    LeNet-5 (LeCun et al. 1998) on 1x28x28: two 5x5 convolutions with ReLU and 2x2
               average pooling, then 120-84-10 linear layers                       (61,706 params)
  vgg_like.pt  a VGG-style net on 3x32x32: 3x3 convolutions with BatchNorm and ReLU in three
               stages of 32, 64, 128 channels, max pooling, one hidden linear layer (0.40M params)
  resnet18.pt  torchvision's resnet18(num_classes=10) on 3x32x32 (ImageNet stem)   (11.2M params)
  resnet20.pt  the CIFAR ResNet-20 of He et al. 2016: 3x3 stem, three stages of three basic
               blocks (16, 32, 64 channels), parameter-free shortcuts (stride-2 subsampling and
               zero channels), global average pooling                              (0.27M params)

Every model is put in eval mode (BatchNorm uses its running statistics) and saved with
torch.jit.script; a model that cannot be scripted would be traced instead, and the script says
which it did. The weights are PyTorch's default initialisation from torch.manual_seed(SEED)
(untrained; train them in PyTorch and save them the same way to measure a trained network).

Usage: /usr/bin/python3 examples/models/make_models.py --out models [--seed 0] [--only lenet5,...]
Needs Debian's python3-torch and python3-torchvision.
"""
import argparse
import os
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("make_models.py needs PyTorch: apt-get install python3-torch python3-torchvision")


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def vgg_like(num_classes: int = 10) -> nn.Module:
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        *block(64, 128), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, num_classes))


class BasicBlock(nn.Module):
    """He et al.'s CIFAR block; the shortcut is the identity, or (when the shape changes) the
    input subsampled by 2 with zero channels appended (their option A: no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride = stride
        self.extra = cout - cin

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.extra != 0:
            shortcut = F.pad(x[:, :, ::self.stride, ::self.stride],
                             [0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2])
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    def __init__(self, num_classes: int = 10, blocks: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers = []
        cin = 16
        for stage, cout in enumerate([16, 32, 64]):
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def resnet18() -> nn.Module:
    try:
        import torchvision
    except ImportError:
        sys.exit("resnet18 needs torchvision: apt-get install python3-torchvision (or leave it out with --only)")
    return torchvision.models.resnet18(num_classes=10)


MODELS = {  # name: (constructor, one example's shape)
    "lenet5": (LeNet5, (1, 28, 28)),
    "vgg_like": (vgg_like, (3, 32, 32)),
    "resnet18": (resnet18, (3, 32, 32)),
    "resnet20": (ResNet20, (3, 32, 32)),
}


def save(model: nn.Module, shape, path: str) -> str:
    """Scripts the eval-mode model (traces it where scripting fails); returns which."""
    model.eval()
    x = torch.randn(2, *shape)
    try:
        module, how = torch.jit.script(model), "scripted"
    except Exception as e:  # noqa: BLE001 - any scripting failure falls back to tracing
        print(f"  scripting failed ({str(e).splitlines()[0]}); tracing instead")
        module, how = torch.jit.trace(model, x), "traced"
    with torch.no_grad():
        if not torch.allclose(module(x), model(x), atol=1e-5):
            sys.exit(f"{path}: the {how} module does not reproduce the model's outputs")
    module.save(path)
    return how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="Models: " + ", ".join(MODELS))
    parser.add_argument("--out", required=True, help="directory for the .pt files (created)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the weights (default 0)")
    parser.add_argument("--only", default=",".join(MODELS), help="comma-separated subset (default: all)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    for n in names:
        if n not in MODELS:
            parser.error(f"--only: unknown model '{n}' (expected some of {', '.join(MODELS)})")
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        torch.manual_seed(args.seed)
        make, shape = MODELS[name]
        model = make()
        path = os.path.join(args.out, name + ".pt")
        how = save(model, shape, path)
        d = sum(p.numel() for p in model.parameters())
        print(f"{path}: {how}, d = {d}, --input-shape {'x'.join(map(str, shape))}")


if __name__ == "__main__":
    main()
