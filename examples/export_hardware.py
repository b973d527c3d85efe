"""Train briefly, then export to NIR (neuromorphic chips) and to a fixed-point FPGA bundle, and check both."""

import tempfile
import warnings
from pathlib import Path

import torch

from lfp_snn.data import load_digits
from lfp_snn.engine import run
from lfp_snn.export import export_fpga, export_nir, import_nir, simulate_bundle
from lfp_snn.models import ModelConfig
from lfp_snn.training import TrainConfig, Trainer

torch.set_num_threads(1)
train, test = load_digits()
out = Path(tempfile.mkdtemp(prefix="lfp-snn-export-"))
# reset to zero without delay is what NIR represents exactly
model_cfg = ModelConfig(arch="spiking-small", input_shape=(1, 8, 8), hidden=(64,), reset="zero", reset_delay=False)
cfg = TrainConfig(epochs=3, steps=10, lr=3e-3, encoder="rate", progress=False)
trainer = Trainer(model_cfg, cfg, out_dir=out / "run")
print("test accuracy", trainer.fit(train, test)[-1]["test_accuracy"])

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    export_nir(out / "run", out / "model.nir")
back = import_nir(out / "model.nir")
x = (torch.rand(25, 4, 1, 8, 8) < 0.3).float()
print("NIR round trip gives identical spikes:", torch.equal(run(trainer.model, x), run(back, x)))

bundle = export_fpga(out / "run", out / "fpga", weight_bits=8, mem_bits=16)
sim = simulate_bundle(bundle, x.flatten(2).numpy().astype("uint8"))
print("FPGA bundle written to", bundle, "- integer simulator output shape", sim["output"].shape)
