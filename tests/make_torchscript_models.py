#!/usr/bin/env python3
"""Writes the TorchScript models and reference spectra that tests/test_torchscript.cpp reads.

Usage: make_torchscript_models.py OUTDIR. Exits 77 (and prints why) when torch cannot be
imported, so that the C++ test can skip with that message.

Files (all float64 unless said):
  mlp_scripted.pt, mlp_traced.pt   Sequential(Linear(5,7), ReLU, Linear(7,3)): the layer order
                                   of the spec mlp:5-7-3, so named_parameters() order matches
  mlp_float32.pt                   the same module left in float32 (twosed converts it)
  resnet_{scripted,traced}.pt      a tiny ResNet block with BatchNorm2d in eval mode
  basic_{scripted,traced}.pt       a torchvision-style basic block (in-place ReLU and add, downsample)
  rewrite_scripted.pt              a tensor rewritten in place after an op it is alive across
  bad_input_rewritten.pt           an op's input rewritten in place after the op (structured: refused)
  resnet_x.npy                     its N inputs (N, 1, 4, 4)
  resnet_theta.npy                 its weights as one vector (BatchNorm weight 1, bias 0:
                                   the init box's points), in named_parameters() order
  resnet_classify_eigs.npy         eigenvalues of the dense Fisher (classify, exact), ascending
  resnet_regress_eigs.npy          ... (regress, s_out = 1)
  resnet_param_types.txt           one line per parameter: name, module type
  bad_training.pt                  the MLP scripted in training mode
  bad_traced_training.pt           the ResNet block traced in training mode, then set to eval
                                   (the flag survives only as a batch_norm constant)
  bad_noparams.pt                  a module without parameters
  bad_3d.pt                        a module whose output is (N, 2, 3)
  bad_text.pt, bad_truncated.pt    not an archive; the first half of mlp_scripted.pt
  prelu.pt                         Linear, PReLU, Linear (no init rule for PReLU; aten::prelu
                                   is unknown to the structured Jacobian); prelu_traced.pt traced
  zoo_{scripted,traced}.pt         every op of the structured path (Zoo below), input 2x8x8
  matmul_{scripted,traced}.pt      addmm and matmul with parameter operands, input 5
  bad_corrupt.pt                   mlp_scripted.pt's archive with its data.pkl overwritten
  bad_version.pt                   mlp_scripted.pt's archive claiming file format version 99
  mlp_thetas_short.npy             2 x 65 thetas for the MLP (d = 66)
  markov_cnn_{scripted,traced}.pt  the chain of cnn:1x6x6-c3k3-relu-p2-f6-relu-f3 (--markov)
  markov_conv_bn.pt                Conv2d (dilation 2, groups 2) + BatchNorm2d + leaky_relu +
                                   avg pool, Conv2d + silu, flatten, Linear; input 2x6x6
  markov_mlp_bn.pt                 Linear + BatchNorm1d + tanh, Linear; input 5
  markov_mlp_nobias.pt             Linear(5,4), tanh, Linear(4,3, no bias): matmul_*.pt as modules
  bad_markov_bn_late.pt            Linear, tanh, BatchNorm1d, Linear (BN not right after Linear)
  bad_markov_layernorm.pt          Linear, LayerNorm, tanh, Linear (LayerNorm in a hidden layer)
"""
import os
import sys
import zipfile

try:
    import numpy as np
    import torch
    import torch.nn as nn
except Exception as e:  # noqa: BLE001 - any import failure means "skip"
    print(f"skip: cannot import torch/numpy with {sys.executable}: {e}")
    sys.exit(77)


class Block(nn.Module):
    """conv -> BN -> tanh -> conv (+ skip) -> tanh -> flatten -> linear (tanh: no dead units, so
    the only null directions of the regression Fisher are the two per BatchNorm channel)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        y = torch.tanh(self.bn1(self.conv1(x)))
        z = torch.tanh(self.conv2(y) + y)
        return self.fc(torch.flatten(z, 1))


class Basic(nn.Module):
    """A torchvision-style basic block: ReLU in place, a strided 1x1 conv + BN on the skip and
    `out += identity` in place. From conv1 to bn2 two independent tensors are alive (the skip's
    result and the branch): the structured pass can cut the graph there; before the skip's BN
    the tensors alive depend on each other, and there it must not."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.down = nn.Sequential(nn.Conv2d(2, 3, 1, stride=2, bias=False), nn.BatchNorm2d(3))
        self.conv1 = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        x = self.relu(self.stem(x))
        identity = self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        out = self.relu(out)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


class Rewrite(nn.Module):
    """`a` is alive across fc2 (not its input) and rewritten in place after it, so the tensors alive
    before fc2 are no cut of the graph; with in_place_input, fc2's own input is rewritten, which the
    structured path refuses (its Gram term would see the rewritten values)."""

    def __init__(self, in_place_input=False):
        super().__init__()
        self.in_place_input = in_place_input
        self.fc1 = nn.Linear(5, 4)
        self.fc2 = nn.Linear(4, 4)
        self.fc3 = nn.Linear(4, 3)

    def forward(self, x):
        h = self.fc1(x)
        a = h + 1.0
        u = h * 3.0
        g = self.fc2(u)
        if self.in_place_input:
            u.mul_(2.0)
        a.mul_(2.0)
        return self.fc3(g + a)


class Zoo(nn.Module):
    """Every op the structured Jacobian knows: convolutions with stride, padding, dilation and
    groups, BatchNorm1d/2d (eval), LayerNorm, max/avg/adaptive-avg pooling, a residual add, cat,
    a scalar mul, dropout (eval), flatten, view and each activation. conv3 sees 2x2 inputs and
    has 1 output position, so that the cost model picks the patch form for it and the
    per-example form for conv1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.conv3 = nn.Conv2d(8, 6, 2, bias=False)
        self.fc1 = nn.Linear(6, 5)
        self.bn2 = nn.BatchNorm1d(5)
        self.ln = nn.LayerNorm(5)
        self.fc2 = nn.Linear(5, 5)
        self.fc3 = nn.Linear(5, 3)
        self.drop = nn.Dropout(0.5)
        self.gelu_tanh = nn.GELU(approximate="tanh")
        self.hardtanh = nn.Hardtanh(-2.0, 2.0)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))  # 4x4x4
        z = nn.functional.elu(self.pool(nn.functional.leaky_relu(self.conv2(y), 0.1) + y))
        a = nn.functional.adaptive_avg_pool2d(z, (2, 2))
        m = nn.functional.max_pool2d(z, 2)
        c = nn.functional.silu(torch.cat([a, m], 1))  # 8x2x2
        h = self.conv3(c).view(c.size(0), -1)  # 6
        h = nn.functional.gelu(self.bn2(self.fc1(h)))
        h = torch.tanh(self.gelu_tanh(self.ln(h)) * 0.5)
        h = nn.functional.softplus(torch.sigmoid(self.fc2(h)))
        return self.fc3(self.drop(self.hardtanh(h)))


class MatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(5, 4))
        self.b1 = nn.Parameter(torch.randn(4))
        self.w2 = nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        return torch.matmul(torch.tanh(torch.addmm(self.b1, x, self.w1)), self.w2)


class NoParams(nn.Module):
    def forward(self, x):
        return torch.relu(x)


class ThreeD(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 6)

    def forward(self, x):
        return self.fc(x).view(x.size(0), 2, 3)


def dense_fisher_eigs(model, x, task):
    """Eigenvalues of F = (1/N) sum_i J_i^T Lambda_i J_i from autograd Jacobians (float64)."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b for n, b in model.named_buffers()}

    def f(flat, xi):
        tensors, off = {}, 0
        for n in names:
            p = params[n]
            tensors[n] = flat[off:off + p.numel()].view_as(p)
            off += p.numel()
        tensors.update(buffers)
        return torch.nn.utils.stateless.functional_call(model, tensors, (xi.unsqueeze(0),))[0]

    theta = torch.cat([params[n].reshape(-1) for n in names])
    d = theta.numel()
    fisher = torch.zeros(d, d, dtype=torch.float64)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda t: f(t, x[i]), theta)  # (k, d)
        if task == "classify":
            p = torch.softmax(f(theta, x[i]).detach(), 0)
            lam = torch.diag(p) - torch.outer(p, p)
        else:
            lam = torch.eye(jac.shape[0], dtype=torch.float64)
        fisher += jac.T @ lam @ jac
    fisher /= x.shape[0]
    return torch.linalg.eigvalsh(fisher).numpy(), theta.numpy()


def rewrite_archive(src, dst, member, data):
    """A copy of the archive src with the entry ending in /member replaced by data."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            body = data if item.filename.endswith("/" + member) else zin.read(item.filename)
            zout.writestr(item, body)


def randomise_norms(module):
    """Running statistics and affine parameters away from their defaults, then eval mode."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return module.eval()


def write_markov_models(out):
    """Chains for the Markov chain model (docs/math.md section 9)."""
    torch.manual_seed(11)
    cnn = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 6), nn.ReLU(),
                        nn.Linear(6, 3)).double().eval()
    torch.jit.script(cnn).save(f"{out}/markov_cnn_scripted.pt")
    torch.jit.trace(cnn, torch.zeros(2, 1, 6, 6, dtype=torch.float64)).save(f"{out}/markov_cnn_traced.pt")
    conv_bn = nn.Sequential(nn.Conv2d(2, 4, 3, padding=2, dilation=2, groups=2), nn.BatchNorm2d(4),
                            nn.LeakyReLU(0.1), nn.AvgPool2d(2), nn.Conv2d(4, 3, 2), nn.SiLU(), nn.Flatten(),
                            nn.Linear(12, 3)).double()
    torch.jit.script(randomise_norms(conv_bn)).save(f"{out}/markov_conv_bn.pt")
    mlp_bn = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    torch.jit.script(randomise_norms(mlp_bn)).save(f"{out}/markov_mlp_bn.pt")
    torch.jit.script(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3, bias=False)).double().eval()).save(
        f"{out}/markov_mlp_nobias.pt")
    late = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.BatchNorm1d(6), nn.Linear(6, 3)).double()
    torch.jit.script(randomise_norms(late)).save(f"{out}/bad_markov_bn_late.pt")
    ln = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    torch.jit.script(ln).save(f"{out}/bad_markov_layernorm.pt")


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).eval()
    torch.jit.script(mlp).save(f"{out}/mlp_float32.pt")
    mlp = mlp.double()
    torch.jit.script(mlp).save(f"{out}/mlp_scripted.pt")
    torch.jit.trace(mlp, torch.zeros(2, 5, dtype=torch.float64)).save(f"{out}/mlp_traced.pt")
    torch.jit.script(nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).train()).save(
        f"{out}/bad_training.pt")

    block = Block().double()
    with torch.no_grad():  # non-trivial running statistics; the init box's BatchNorm points
        block.bn1.running_mean.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))
        block.bn1.running_var.copy_(torch.tensor([0.5, 2.0], dtype=torch.float64))
        block.bn1.weight.fill_(1.0)
        block.bn1.bias.fill_(0.0)
    block.train()
    torch.jit.trace(block, torch.zeros(2, 1, 4, 4, dtype=torch.float64)).save(f"{out}/bad_traced_training.pt")
    traced_train = torch.jit.load(f"{out}/bad_traced_training.pt")
    traced_train.eval()
    traced_train.save(f"{out}/bad_traced_training.pt")
    block.eval()
    torch.jit.script(block).save(f"{out}/resnet_scripted.pt")
    torch.jit.trace(block, torch.zeros(2, 1, 4, 4, dtype=torch.float64)).save(f"{out}/resnet_traced.pt")
    with open(f"{out}/resnet_param_types.txt", "w") as fh:
        for n, _ in block.named_parameters():
            owner = n.rsplit(".", 1)[0]
            fh.write(f"{n} {type(block.get_submodule(owner)).__name__}\n")

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(80, 1, 4, 4, generator=gen, dtype=torch.float64)
    np.save(f"{out}/resnet_x.npy", x.numpy())
    for task in ("classify", "regress"):
        eigs, theta = dense_fisher_eigs(block, x, task)
        np.save(f"{out}/resnet_{task}_eigs.npy", eigs)
    np.save(f"{out}/resnet_theta.npy", theta)

    torch.jit.script(NoParams().eval()).save(f"{out}/bad_noparams.pt")
    torch.jit.script(ThreeD().double().eval()).save(f"{out}/bad_3d.pt")
    torch.jit.script(nn.Sequential(nn.Linear(5, 4), nn.PReLU(), nn.Linear(4, 3)).double().eval()).save(
        f"{out}/prelu.pt")
    prelu = nn.Sequential(nn.Linear(5, 4), nn.PReLU(), nn.Linear(4, 3)).double().eval()
    torch.jit.trace(prelu, torch.zeros(2, 5, dtype=torch.float64)).save(f"{out}/prelu_traced.pt")
    torch.manual_seed(5)
    basic = randomise_norms(Basic().double())
    torch.jit.script(basic).save(f"{out}/basic_scripted.pt")
    torch.jit.trace(basic, torch.zeros(2, 1, 6, 6, dtype=torch.float64)).save(f"{out}/basic_traced.pt")
    torch.jit.script(Rewrite().double().eval()).save(f"{out}/rewrite_scripted.pt")
    torch.jit.script(Rewrite(in_place_input=True).double().eval()).save(f"{out}/bad_input_rewritten.pt")
    zoo = Zoo().double()
    with torch.no_grad():  # running statistics and affine parameters away from their defaults
        for bn in (zoo.bn1, zoo.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        zoo.ln.weight.uniform_(0.5, 1.5)
        zoo.ln.bias.uniform_(-0.5, 0.5)
    zoo.eval()
    torch.jit.script(zoo).save(f"{out}/zoo_scripted.pt")
    torch.jit.trace(zoo, torch.zeros(2, 2, 8, 8, dtype=torch.float64)).save(f"{out}/zoo_traced.pt")
    mm = MatMul().double().eval()
    torch.jit.script(mm).save(f"{out}/matmul_scripted.pt")
    torch.jit.trace(mm, torch.zeros(2, 5, dtype=torch.float64)).save(f"{out}/matmul_traced.pt")
    with open(f"{out}/bad_text.pt", "w") as fh:
        fh.write("this is not a TorchScript archive\n")
    with open(f"{out}/mlp_scripted.pt", "rb") as fh:
        data = fh.read()
    with open(f"{out}/bad_truncated.pt", "wb") as fh:
        fh.write(data[: len(data) // 2])
    rewrite_archive(f"{out}/mlp_scripted.pt", f"{out}/bad_corrupt.pt", "data.pkl", b"\x80\x02garbage" * 8)
    rewrite_archive(f"{out}/mlp_scripted.pt", f"{out}/bad_version.pt", "version", b"99\n")
    np.save(f"{out}/mlp_thetas_short.npy", np.zeros((2, 65)))
    write_markov_models(out)
    print(f"wrote TorchScript models to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
