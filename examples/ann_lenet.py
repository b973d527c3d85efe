"""The ANN path: the paper's LeNet on digits, trained by LFP-ε and by SGD on cross-entropy, same seed."""

import torch

from lfp_snn.data import load_digits
from lfp_snn.models import ModelConfig
from lfp_snn.training import TrainConfig, Trainer

torch.set_num_threads(1)
train, test = load_digits()
model_cfg = ModelConfig(arch="lenet", input_shape=(1, 8, 8), classes=10)
for method, reward, opt, lr in (("lfp", "softmax", "adam", 1e-3), ("gradient", "auto", "sgd", 0.05)):
    cfg = TrainConfig(method=method, reward=reward, optimizer=opt, lr=lr, epochs=5, batch_size=32, progress=False)
    acc = Trainer(model_cfg, cfg).fit(train, test)[-1]["test_accuracy"]
    print(f"{method}: test accuracy {acc:.3f}")
