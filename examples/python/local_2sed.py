"""A local 2sED: trains a small CNN in PyTorch for a few epochs on Fashion-MNIST, then measures
the 2sED in a box of radius R around the trained weights (space="local:R") and, for comparison,
over the initialisation box.

    /usr/bin/python3 examples/python/local_2sed.py [--epochs 2] [--radius 0.01] [--samples 10]
"""

import argparse

import torch

import fashion_mnist
import twosed


def small_cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(16 * 5 * 5, 10))


def train(model, epochs, count=10000):
    images, labels = fashion_mnist.load("train", count)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(images))
        total = 0.0
        for i in range(0, len(images), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: training loss {total / len(images):.4f}")
    return model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--radius", type=float, default=0.01)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--inputs", type=int, default=100)
    args = p.parse_args()
    torch.manual_seed(0)
    model = train(small_cnn(), args.epochs)
    x, _ = fashion_mnist.load("test", args.inputs)
    eps = twosed.logspace(1e-6, 1e-1, 11)
    local = twosed.measure(model, x, space=f"local:{args.radius}", samples=args.samples, zetas=[0, 0.5], eps=eps)
    init = twosed.measure(model, x, space="init", samples=args.samples, zetas=[0, 0.5], eps=eps)
    print(f"d = {local.d}; d_zeta(eps) / d around the trained weights (R = {args.radius}) and over the init box:")
    print(f"{'eps':>10s} {'local z=0':>10s} {'init z=0':>10s} {'local z=.5':>11s} {'init z=.5':>10s}")
    for i, e in enumerate(eps):
        row = [r.curve(z).value[i] / r.d for z in (0.0,) for r in (local, init)]
        row += [r.curve(0.5).value[i] / r.d for r in (local, init)]
        print(f"{e:10.1e} " + " ".join(f"{v:10.4f}" for v in row))


if __name__ == "__main__":
    main()
