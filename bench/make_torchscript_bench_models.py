#!/usr/bin/env python3
"""Writes the TorchScript models that bench_torchscript times (docs/benchmarks.md,
"TorchScript models"): torchvision's resnet18(num_classes=10), the CIFAR-style ResNet-18 (the
same network with a 3x3 stride-1 stem and no max-pool, 11.2M parameters) and a CIFAR-style
ResNet-20 (3 stages of 3 basic blocks, 16/32/64 channels, option-B 1x1 projection shortcuts), all
in eval mode, float32 as people save them (twosed measures them in float64), scripted.

Usage: make_torchscript_bench_models.py OUTDIR
"""
import sys

import torch
import torch.nn as nn
import torchvision


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(3):
                blocks.append(BasicBlock(cin, cout, stride if b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        y = self.blocks(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def main(out):
    torch.manual_seed(0)
    torch.jit.script(torchvision.models.resnet18(num_classes=10).eval()).save(f"{out}/resnet18.pt")
    cifar = torchvision.models.resnet18(num_classes=10)
    cifar.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    cifar.maxpool = nn.Identity()
    torch.jit.script(cifar.eval()).save(f"{out}/resnet18_cifar.pt")
    torch.jit.script(ResNet20().eval()).save(f"{out}/resnet20.pt")
    print(f"wrote resnet18.pt, resnet18_cifar.pt and resnet20.pt to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
