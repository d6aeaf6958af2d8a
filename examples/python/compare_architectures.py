"""Compares a few torchvision architectures and MLPs by their 2sED on Fashion-MNIST inputs, and
draws d_zeta(eps) / d for each in one figure.

    /usr/bin/python3 examples/python/compare_architectures.py [--inputs 20] [--samples 5] [--out fig.png]

Every model sees the same N inputs. torchvision models get a first layer for one input channel
and ten classes; they have millions of parameters, so keep N and M small (each parameter sample
takes N*9 backward passes through the network).
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision

import fashion_mnist
import twosed


def one_channel_squeezenet():
    net = torchvision.models.squeezenet1_1(num_classes=10)
    net.features[0] = torch.nn.Conv2d(1, 64, kernel_size=3, stride=2)
    return net


def one_channel_mobilenet():
    net = torchvision.models.mobilenet_v3_small(num_classes=10)
    net.features[0][0] = torch.nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1, bias=False)
    return net


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=20)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--out", default="architectures.png")
    p.add_argument("--skip-torchvision", action="store_true", help="MLPs only (fast)")
    args = p.parse_args()

    images, _ = fashion_mnist.load("test", args.inputs)
    models = {"mlp:784-32-10": "mlp:784-32-10", "mlp:784-128-64-10": "mlp:784-128-64-10",
              "cnn:1x28x28-c8k3-relu-p2-f10": "cnn:1x28x28-c8k3-relu-p2-f10"}
    if not args.skip_torchvision:
        models["squeezenet1_1"] = one_channel_squeezenet().eval()
        models["mobilenet_v3_small"] = one_channel_mobilenet().eval()
    eps = twosed.logspace(1e-6, 1e-1, 15)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    print(f"{'model':32s} {'d':>10s} {'d_0.5(1e-3)/d':>14s}")
    for name, model in models.items():
        r = twosed.measure(model, images, samples=args.samples, zetas=[0.5], eps=eps, bootstrap=200)
        c = r.curve(0.5)
        ax.plot(c.eps, c.value / r.d, marker="o", ms=3, label=f"{name} (d = {r.d:,})")
        ax.fill_between(c.eps, (c.value - c.stderr) / r.d, (c.value + c.stderr) / r.d, alpha=0.2)
        at = int(np.argmin(np.abs(np.log(c.eps) - np.log(1e-3))))
        print(f"{name:32s} {r.d:10d} {c.value[at] / r.d:14.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("eps")
    ax.set_ylabel("d_0.5(eps) / d")
    ax.set_title(f"2sED on {args.inputs} Fashion-MNIST images, M = {args.samples}")
    ax.legend(fontsize=8)
    fig.savefig(args.out, bbox_inches="tight")
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
