"""One LFP training step by hand: feedback -> p.grad = -feedback -> any torch optimiser."""

import torch
from torch import nn

import lfp_snn
from lfp_snn.encoders import constant_encode

torch.manual_seed(0)
snn = lfp_snn.SpikingSequential(
    nn.Flatten(), nn.Linear(64, 256), lfp_snn.LIF(beta=0.9, threshold=1.0), nn.Linear(256, 10), lfp_snn.LIF(beta=0.9)
)
x = torch.rand(32, 1, 8, 8)  # a batch of images in [0, 1]
labels = torch.randint(0, 10, (32,))
x_seq = constant_encode(x, steps=10)  # [T, B, ...], time first; no copy
opt = torch.optim.Adam(snn.parameters(), lr=1e-3)

for step in range(5):
    res = lfp_snn.feedback_result(snn, x_seq, labels, reward="sequence", rule="epsilon")
    opt.zero_grad()
    lfp_snn.write_gradients(snn, res.feedback)  # p.grad = -feedback (LFP maximises the reward)
    opt.step()
    print(f"step {step}: mean reward {res.reward.mean():+.4f}, hidden spike rate {res.spike_rate['2']:.3f}")

spikes = snn(x_seq)  # inference: output spikes [T, B, C]
print("predictions:", spikes.sum(0).argmax(-1)[:8].tolist())
