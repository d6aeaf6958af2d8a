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
expect 2 "Markov chain model is not implemented yet for TorchScript models" "${RUN[@]}" \
  --model "$M/mlp_scripted.pt" --data synthetic:blobs:3:5 --markov --sigma 0.1
expect 2 "--space init: no init rule for parameter '1.weight' of module type PReLU" "${RUN[@]}" \
  --model "$M/prelu.pt" --data synthetic:blobs:3:5
expect 0 "zeta = 0\.5" "${RUN[@]}" --model "$M/prelu.pt" --data synthetic:blobs:3:5 --space box:0.5
expect 2 "--input-shape '1xx4': expected positive sizes" "${RUN[@]}" --model "$M/resnet_traced.pt" \
  --data synthetic:blobs:3:16 --input-shape 1xx4
expect 2 "add --no-db" measure -q --samples 2 --model "$M/mlp_scripted.pt" --data synthetic:blobs:3:5
finish
