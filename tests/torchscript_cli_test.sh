#!/usr/bin/env bash
# `twosed measure --model FILE.pt` end to end: a measurement, and every refusal (one line, exit 1
# for a file or data that do not fit, 2 for options). Usage: torchscript_cli_test.sh twosed SRCDIR
# Exits 77 (skipped) when /usr/bin/python3 cannot import torch.
set -u
TWOSED="$1"
SRC="$2"
source "$SRC/cli_lib.sh"

M="$WORK/models"
/usr/bin/python3 "$SRC/make_torchscript_models.py" "$M" > "$WORK/make.log" 2>&1
rc=$?
if [ "$rc" -eq 77 ]; then
  cat "$WORK/make.log"
  exit 77
elif [ "$rc" -ne 0 ]; then
  echo "FAIL: make_torchscript_models.py: $(tail -n 3 "$WORK/make.log")"
  exit 1
fi

RUN=(measure -q --no-db --samples 3 --bootstrap 50)
# A measurement: flat inputs from the data; a CxHxW one from --input-shape or an .npy's shape.
expect 0 "zeta = 0\.5" "${RUN[@]}" --model "$M/mlp_scripted.pt" --data synthetic:blobs:3:5 --inputs 10
expect 0 '"d": 66' "${RUN[@]}" --model "$M/mlp_traced.pt" --data synthetic:blobs:3:5 --inputs 10 \
  --format json --jacobian autograd
expect 0 "zeta = 0\.5" "${RUN[@]}" --model "$M/resnet_traced.pt" --data synthetic:blobs:3:16 --inputs 6 \
  --input-shape 1x4x4
expect 0 "zeta = 0\.5" "${RUN[@]}" --model "$M/resnet_scripted.pt" --inputs-file "$M/resnet_x.npy" --space local:0.1

# Refusals.
expect 1 "bad_text.pt: not a readable TorchScript file" "${RUN[@]}" --model "$M/bad_text.pt" --data synthetic:blobs:3:5
expect 1 "bad_truncated.pt: not a readable TorchScript file" "${RUN[@]}" --model "$M/bad_truncated.pt" \
  --data synthetic:blobs:3:5
expect 1 "bad_training.pt: module '<root>' \(Sequential\) is in training mode" "${RUN[@]}" \
  --model "$M/bad_training.pt" --data synthetic:blobs:3:5
expect 1 "bad_traced_training.pt: the graph runs aten::batch_norm in training mode" "${RUN[@]}" \
  --model "$M/bad_traced_training.pt" --data synthetic:blobs:3:16 --input-shape 1x4x4
expect 1 "bad_noparams.pt: the module has no parameters" "${RUN[@]}" --model "$M/bad_noparams.pt" \
  --data synthetic:blobs:3:5
expect 1 "bad_3d.pt: output of shape \(1, 2, 3\)" "${RUN[@]}" --model "$M/bad_3d.pt" --data synthetic:blobs:3:5
expect 1 "resnet_traced.pt: the graph does not take inputs of shape \(1, 5\)" "${RUN[@]}" \
  --model "$M/resnet_traced.pt" --data synthetic:blobs:3:5
expect 1 "missing.pt: no such file" "${RUN[@]}" --model "$M/missing.pt" --data synthetic:blobs:3:5
# The structured Jacobian: taken by auto and named in the report; refused (structured) or left
# for autograd (auto) on a graph with an op it does not know.
expect 0 '"jacobian": "structured \(aten::linear \[0.weight, 0.bias\]: kronecker' "${RUN[@]}" \
  --model "$M/mlp_scripted.pt" --data synthetic:blobs:3:5 --inputs 10 --format json
expect 0 "Jacobian structured \(.*: per-example" "${RUN[@]}" --model "$M/resnet_traced.pt" \
  --data synthetic:blobs:3:16 --inputs 6 --input-shape 1x4x4 --jacobian structured
expect 2 "--jacobian structured: .*prelu.pt does not know aten::prelu at .*\.py:[0-9]+: F\.prelu" \
  "${RUN[@]}" --model "$M/prelu.pt" --data synthetic:blobs:3:5 --space box:0.5 --jacobian structured
expect 0 "Jacobian autograd \(the structured path does not know aten::prelu" "${RUN[@]}" --model "$M/prelu.pt" \
  --data synthetic:blobs:3:5 --space box:0.5
expect 2 "--jacobian 'rows': expected auto, autograd or structured" "${RUN[@]}" \
  --model "$M/mlp_scripted.pt" --data synthetic:blobs:3:5 --jacobian rows
expect 1 "bad_corrupt.pt: not a readable TorchScript file: .*unpickling" "${RUN[@]}" --model "$M/bad_corrupt.pt" \
  --data synthetic:blobs:3:5
expect 1 "bad_version.pt: not a readable TorchScript file: .*version 99" "${RUN[@]}" --model "$M/bad_version.pt" \
  --data synthetic:blobs:3:5
expect 1 "mlp_thetas_short.npy: expected shape \(M, 66\) \(d = 66\), got \(2, 65\)" measure -q --no-db \
  --model "$M/mlp_scripted.pt" --data synthetic:blobs:3:5 --inputs 10 --thetas "$M/mlp_thetas_short.npy"
# --markov: a graph with a skip is refused naming the residual add and its source line (scripted:
# the module's Python source; traced: where the add was recorded).
for f in resnet_scripted resnet_traced; do
  expect 2 "$f.pt: the Markov chain model needs a chain of layers, but the graph has a skip connection: aten::add at \
[^ ]*:[0-9]+: .*conv2\(y\) \+ y.* joins two paths from the input" "${RUN[@]}" --model "$M/$f.pt" \
    --data synthetic:blobs:3:16 --input-shape 1x4x4 --markov --sigma 0.1
done
# A chain: conv+relu+maxpool, linear+relu, linear; the layer table names each Markov layer.
expect 0 "layer breakdown of the lower 2sED" "${RUN[@]}" --model "$M/markov_cnn_traced.pt" \
  --data synthetic:blobs:3:36 --input-shape 1x6x6 --inputs 6 --markov --sigma 0.1
expect 0 " 4 +78 " "${RUN[@]}" --model "$M/markov_cnn_scripted.pt" --data synthetic:blobs:3:36 --input-shape 1x6x6 \
  --inputs 6 --markov --sigma 0.1
expect 2 "bad_markov_layernorm.pt: the Markov chain model cannot take aten::layer_norm inside a hidden Markov layer" \
  "${RUN[@]}" --model "$M/bad_markov_layernorm.pt" --data synthetic:blobs:3:5 --markov --sigma 0.1
expect 0 "Markov chain model, sigma = 0.1, R = 2 noise draws, N = 10 inputs" measure --plan \
  --model "$M/markov_conv_bn.pt" --input-shape 2x6x6 --inputs 10 --markov --sigma 0.1 --noise-draws 2
expect 0 "1 +0 +48 +4 +90 x 12 +36 +conv2d, batch_norm, leaky_relu, avg_pool2d" measure --plan \
  --model "$M/markov_conv_bn.pt" --input-shape 2x6x6 --inputs 10 --markov --sigma 0.1 --noise-draws 2
# The memory pre-flight check: the samples-side Gram of N = 100000 examples (k - 1 = 2 rows each) is 1 TB.
expect 2 "mlp_scripted.pt \(d = 66\) with N = 100000 inputs needs about [0-9.]+ GB per parameter sample" \
  "${RUN[@]}" --model "$M/mlp_scripted.pt" --data synthetic:blobs:3:5:100000 --inputs 100000 --side samples
expect 2 "--space init: no init rule for parameter '1.weight' of module type PReLU" "${RUN[@]}" \
  --model "$M/prelu.pt" --data synthetic:blobs:3:5
expect 0 "zeta = 0\.5" "${RUN[@]}" --model "$M/prelu.pt" --data synthetic:blobs:3:5 --space box:0.5
expect 2 "--input-shape '1xx4': expected positive sizes" "${RUN[@]}" --model "$M/resnet_traced.pt" \
  --data synthetic:blobs:3:16 --input-shape 1xx4

# --plan: the graph's operations and skips, parameters per layer, the matrix and the memory.
PLAN=(measure --plan --model "$M/resnet_scripted.pt" --input-shape 1x4x4 --inputs 10)
expect 0 "input 1x4x4, k = 3 outputs, d = 129 parameters" "${PLAN[@]}"
expect 0 "conv1 +Conv2d +20$" "${PLAN[@]}"
# The Jacobian path measure will take, and each parametric op's Gram form by the cost model.
expect 0 "jacobian +structured, one forward pass over all 10 inputs \(0\.0 MB recorded\), backward passes in 1 group of ops" \
  "${PLAN[@]}"
# A budget below one op's backprop vectors: one group per cut of the graph (before the batch
# norm, the second convolution and the linear head).
expect 0 "backward passes in 4 groups of ops" measure --plan --model "$M/resnet_scripted.pt" --input-shape 1x4x4 \
  --inputs 20000 --memory-budget 1 --side samples
expect 0 "aten::conv2d +conv1.weight, conv1.bias +(per-example|patch) +[0-9.e-]+$" "${PLAN[@]}"
expect 0 "aten::batch_norm +bn1.weight, bn1.bias +rows " "${PLAN[@]}"
expect 0 "aten::linear +fc.weight, fc.bias +kronecker " "${PLAN[@]}"
expect 0 "jacobian +autograd rows \(as asked\)" "${PLAN[@]}" --jacobian autograd
expect 0 "jacobian +autograd rows: the structured path does not know aten::prelu" measure --plan --model "$M/prelu.pt" \
  --data synthetic:blobs:3:5 --inputs 10
expect 2 "--jacobian structured: .*prelu.pt does not know aten::prelu" measure --plan --model "$M/prelu.pt" \
  --data synthetic:blobs:3:5 --inputs 10 --jacobian structured
expect 0 "bn1 +BatchNorm2d +4$" "${PLAN[@]}"
expect 0 "fc +Linear +99$" "${PLAN[@]}"
expect 0 "aten::add at .*conv2\(y\) \+ y" "${PLAN[@]}"
expect 0 "matrix +20 x 20 \(Gram, sample side\)" "${PLAN[@]}"  # k - 1 = 2 rows per example
expect 0 "machine .*: fits" "${PLAN[@]}"
expect 0 "skips +none \(a chain\)" measure --plan --model "$M/mlp_traced.pt" --input-shape 5 --inputs 40
expect 0 "matrix +66 x 66 \(Fisher, parameter side\)" measure --plan --model "$M/mlp_traced.pt" --input-shape 5 \
  --inputs 40
expect 2 "Markov chain model needs a chain of layers" "${PLAN[@]}" --markov --sigma 0.1

# The results store: the configuration names the file and its SHA-256; runs, show and export
# read the run; --samples 2 resumed to 4 equals a fresh --samples 4; a changed file is refused.
cp "$M/mlp_scripted.pt" net.pt
DB=(measure -q --model net.pt --data synthetic:blobs:3:5 --inputs 10 --bootstrap 50 --format json)
"$TWOSED" "${DB[@]}" --db s.db --samples 2 > two.json 2> err.txt || bad "--db measurement failed: $(cat err.txt)"
"$TWOSED" "${DB[@]}" --db s.db --samples 4 --resume > resumed.json 2> err.txt || bad "--resume failed: $(cat err.txt)"
"$TWOSED" "${DB[@]}" --db fresh.db --samples 4 > fresh.json 2> err.txt || bad "fresh --db failed: $(cat err.txt)"
/usr/bin/python3 - resumed.json fresh.json <<'PY' && ok || bad "resumed TorchScript run differs from a fresh one"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["resumed_samples"] == 2, a["resumed_samples"]
for k in ["curves", "at_n", "ed", "mean_trace"]:
    assert a.get(k) == b.get(k), k
PY
expect 0 "net.pt" runs --db s.db
expect 0 "zeta = 0\.5" show 1 --db s.db
expect 0 "\"model_sha256\": \"$(sha256sum net.pt | cut -c1-64)\"" export 1 --db s.db --format json
expect 0 "\"model\": \"net.pt\"" export 1 --db s.db --format json
"$TWOSED" "${DB[@]}" --db s.db --samples 2 --space box:0.5 > /dev/null 2>&1 || bad "second --db run failed"
cp "$M/mlp_traced.pt" net.pt  # the same d, other bytes
expect 1 "run 2 measured net.pt with SHA-256 [0-9a-f]{16}, but the file has changed since \(SHA-256 [0-9a-f]{16} now\)" \
  "${DB[@]}" --db s.db --samples 4 --space box:0.5 --resume
finish
