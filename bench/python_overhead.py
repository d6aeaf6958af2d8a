"""The Python call against the CLI on the same measurement: whole wall time of each, run in
alternation, best of --repeats (the machine is shared: the best is the least disturbed).

    PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py --cli build/twosed \
        [--model mlp:784-1024-256-10] [--samples 20] [--repeats 3] [--torchvision resnet18 --inputs 4]

A spec model is measured on Fashion-MNIST (the CLI's default data, N = --inputs). The CLI time is
the process's (start-up and LibTorch loading included); the Python time is the measure() call in a
process that has already imported twosed (and torch). Both also report the engine's own time
(the result's "seconds"). With --torchvision NAME, the torchvision model (eval mode, random
weights, 1 input channel replaced by 3x32x32 random inputs) is saved as TorchScript for the CLI
and passed as an nn.Module to Python.
"""

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np

import twosed


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", required=True)
    p.add_argument("--model", default="mlp:784-1024-256-10")
    p.add_argument("--torchvision", default=None)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--inputs", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()

    folder = tempfile.mkdtemp(prefix="twosed-bench-")
    common = dict(samples=args.samples, threads=args.threads, progress=False)
    if args.torchvision:
        import torch
        import torchvision

        net = getattr(torchvision.models, args.torchvision)(num_classes=10).eval()
        x = torch.randn(args.inputs, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        model_file = os.path.join(folder, "net.pt")
        torch.jit.script(net).save(model_file)
        np.save(os.path.join(folder, "x.npy"), x.double().numpy())
        cli_args = ["--model", model_file, "--inputs-file", os.path.join(folder, "x.npy")]
        python_call = lambda: twosed.measure(net, x, **common)  # noqa: E731
        label = f"{args.torchvision} (nn.Module; CLI: its TorchScript file), N = {args.inputs}"
    else:
        data = "idx:/usr/share/datasets/fashion-mnist"
        cli_args = ["--model", args.model, "--data", data, "--inputs", str(args.inputs)]
        python_call = lambda: twosed.measure(args.model, data, num_inputs=args.inputs, **common)  # noqa: E731
        label = f"{args.model}, Fashion-MNIST, N = {args.inputs}"
    cli = [args.cli, "measure", "--no-db", "-q", "--format", "json", "--samples", str(args.samples), "--threads",
           str(args.threads)] + cli_args

    cli_wall, cli_engine, py_wall, py_engine = [], [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = subprocess.run(cli, check=True, capture_output=True, text=True).stdout
        cli_wall.append(time.perf_counter() - t0)
        cli_engine.append(json.loads(out)["seconds"])
        t0 = time.perf_counter()
        r = python_call()
        py_wall.append(time.perf_counter() - t0)
        py_engine.append(r.to_dict()["seconds"])
        same = {k: v for k, v in r.to_dict().items() if k in ("curves", "d", "M", "N")} == \
            {k: v for k, v in json.loads(out).items() if k in ("curves", "d", "M", "N")}
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; threads {args.threads}")
    print(f"measurement: {label}, M = {args.samples}, best of {args.repeats} (alternating)")
    print(f"command: {' '.join(cli)}")
    print(f"CLI process wall   {min(cli_wall):8.3f} s   engine {min(cli_engine):8.3f} s")
    print(f"Python call wall   {min(py_wall):8.3f} s   engine {min(py_engine):8.3f} s")
    print(f"ratio Python/CLI   wall {min(py_wall) / min(cli_wall):.3f}   engine {min(py_engine) / min(cli_engine):.3f}")
    print(f"same curves: {same}")


if __name__ == "__main__":
    main()
