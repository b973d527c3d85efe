"""Train the small spiking network on scikit-learn's digits with LFP and compare rules, with the Trainer API."""

import torch

from lfp_snn.data import load_digits
from lfp_snn.models import ModelConfig
from lfp_snn.training import TrainConfig, Trainer

torch.set_num_threads(1)
train, test = load_digits()
for rule in ("epsilon", "zplus-zminus"):
    model_cfg = ModelConfig(arch="spiking-small", input_shape=(1, 8, 8), classes=10, beta=0.9)
    cfg = TrainConfig(method="lfp", rule=rule, epochs=5, steps=10, lr=3e-3, batch_size=32, progress=False)
    history = Trainer(model_cfg, cfg).fit(train, test)
    last = history[-1]
    print(f"LFP-{rule}: test accuracy {last['test_accuracy']:.3f}, hidden spike rate {last['spike_rate/2']:.3f}, "
          f"silent hidden neurons {last['silent/2']:.2f}")
