#!/usr/bin/env bash
# Set up lfp-snn in ./.venv: CPU torch 2.13.0, the package with its extras, norse and neurobench without their
# CUDA torch, the NIR readers the export is cross-checked in (spyx, sinabs, rockpool), and (as root, where apt-get exists) Debian's Fashion-MNIST and Icarus Verilog for the real-data/HDL
# tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q -c scripts/constraints.txt)
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".[dev,baselines,export,events,plots,triton,ray]"
# norse asks for torchvision and a CUDA torch; its real needs (numpy, nir, nirtorch) are installed above.
"${PIP[@]}" --no-deps "norse==1.1.0"
# neurobench (the efficiency metrics' package path) asks for torchaudio, numba and llvmlite and a CUDA torch; the
# metrics, models and Benchmark import without them, and its real needs (numpy, tqdm, snntorch, tonic) are above.
"${PIP[@]}" --no-deps "neurobench==2.3.0"
# NIR readers for the cross-checks of the export presets (tests/test_nir_targets.py): spyx with the CPU jax; rockpool
# needs only numpy and scipy; sinabs asks for nir <= 1.0.4 and samna (only its chip backend imports samna), so it
# goes in without its dependencies, beside pbr.
"${PIP[@]}" "spyx==1.0.0" "jax[cpu]==0.10.2"
"${PIP[@]}" pbr "rockpool==3.1.0"
"${PIP[@]}" --no-deps "sinabs==3.1.3"
# sinabs's own pins (nir 1.0.4, nirtorch 1.0) in a folder of their own, not in the environment: the tests run sinabs
# there in a subprocess, to check that the sinabs preset loads in the NIR version sinabs asks for.
[ -d .venv/sinabs-nir-1.0.4/nir ] || "${PIP[@]}" --no-deps --target .venv/sinabs-nir-1.0.4 "nir==1.0.4" "nirtorch==1.0"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  [ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
  command -v iverilog >/dev/null || need+=(iverilog)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
else
  echo "note: not root; install Debian's dataset-fashion-mnist and iverilog yourself for the real-data and HDL tests"
fi
.venv/bin/python -c "import torch, lfp_snn; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('lfp-snn', lfp_snn.__version__, 'with torch', torch.__version__)"
