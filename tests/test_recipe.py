"""The paper's recipe (``--recipe paper-snn``) and the authors' unit-wise update clipping (``--clip
agc-unit``)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lfp_snn import LIF, cli
from lfp_snn.training.recipes import RECIPES, recipe_fields
from lfp_snn.training.updates import clip_unitwise

pytestmark = pytest.mark.usefixtures("one_thread")


def literal_unitwise(layers, lam):
    """Per layer and output unit i: n_i = max(sqrt(Σ_params Σ_j p_ij²), 1e-6); each parameter's update row
    g_i becomes λ n_i g_i / ||g_i|| where ||g_i|| / n_i > λ (a zero row: / 1e-6)."""
    out = {}
    for name, layer in layers:
        ps = dict(layer.named_parameters(recurse=False))
        units = next(iter(ps.values())).shape[0]
        n = [0.0] * units
        for p in ps.values():
            rows = p.detach().reshape(units, -1).tolist()
            for i in range(units):
                n[i] += sum(v * v for v in rows[i])
        n = [max(v**0.5, 1e-6) for v in n]
        for key, p in ps.items():
            rows = p.grad.reshape(units, -1).tolist()
            new = []
            for i in range(units):
                u = sum(v * v for v in rows[i]) ** 0.5
                if u / n[i] > lam:
                    scale = lam * n[i] / (u if u != 0 else 1e-6)
                    new.append([v * scale for v in rows[i]])
                else:
                    new.append(rows[i])
            out[f"{name}.{key}"] = torch.tensor(new, dtype=torch.float64).reshape(p.shape)
    return out


def test_unitwise_clipping_matches_the_literal_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4), LIF(0.9)).double()
    for p in model.parameters():
        p.grad = torch.randn_like(p) * torch.rand(()) * 0.3
    with torch.no_grad():
        model[2].weight[1].zero_()  # a unit whose weight row is zero: only its bias counts in n_i
        model[2].bias[1] = 0.0  # ... and then the floor
        model[0].weight.grad[2].zero_()  # a zero update row stays zero
    want = literal_unitwise([("0", model[0]), ("2", model[2])], 0.06)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    clip_unitwise(model, 0.06)
    got = dict(model.named_parameters())
    clipped = 0
    for name, w in want.items():
        torch.testing.assert_close(got[name].grad, w, rtol=1e-12, atol=1e-15)
        clipped += int((got[name].grad != before[name]).any(dim=tuple(range(1, w.dim())) or None).sum())
    assert clipped >= 3  # some units were clipped, some were not
    assert any(torch.equal(got[n].grad, before[n]) for n in want) or clipped < sum(
        w.shape[0] for w in want.values()
    )


def test_unitwise_differs_from_agc_on_biases():
    """agc bounds a bias element by |b_i| alone; the unit-wise form by the unit's whole norm."""
    from lfp_snn.training.updates import clip_updates

    torch.manual_seed(1)
    a, b = nn.Linear(5, 3).double(), nn.Linear(5, 3).double()
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        for p in m.parameters():
            p.grad = torch.ones_like(p) * 0.05
    clip_updates(a, "agc", 0.06)
    clip_updates(b, "agc-unit", 0.06)
    assert not torch.allclose(a.bias.grad, b.bias.grad)


def test_the_recipe_and_what_the_command_line_replaces(tmp_path, capsys):
    argv = ["train", "--recipe", "paper-snn", "--subset", "64", "--test-subset", "32", "--epochs", "1"]
    argv += ["--clip-value", "0.1", "-T", "4", "--out", str(tmp_path / "lfp")]
    assert cli.main(argv) == 0
    said = capsys.readouterr().out
    assert "recipe paper-snn:" in said and "reward_norm=maxabs (LFP methods)" in said
    assert (
        "the command line replaces clip_value=0.06" in said and "the command line replaces steps=25" in said
    )
    cfg = json.loads((tmp_path / "lfp" / "config.json").read_text())
    t, m = cfg["train"], cfg["model"]
    assert (t["optimizer"], t["lr"], t["schedule"], t["clip"]) == ("adam", 1e-3, "onecycle", "agc-unit")
    assert (t["clip_value"], t["steps"], t["reward_norm"], m["beta"]) == (0.1, 4, "maxabs", 0.9)
    # a BPTT baseline takes the recipe's common settings but not LFP's reward normalisation
    argv = ["train", "--recipe", "paper-snn", "--method", "bptt-snntorch", "--subset", "64", "--epochs", "1"]
    argv += ["--test-subset", "32", "-T", "3", "--out", str(tmp_path / "bptt")]
    assert cli.main(argv) == 0
    t = json.loads((tmp_path / "bptt" / "config.json").read_text())["train"]
    assert (t["clip"], t["reward_norm"]) == ("agc-unit", "none")


def test_recipe_refusals(tmp_path, capsys):
    assert cli.main(["train", "--recipe", "paper-snn", "--arch", "mlp", "--out", str(tmp_path)]) == 2
    assert "trains spiking models" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_fields("paper", "lfp", set())


def test_recipe_fields_skip_what_is_given():
    fields, overridden = recipe_fields("paper-snn", "lfp", {"lr"})
    assert "lr" not in fields and overridden == ["lr=0.001"] and fields["reward_norm"] == "maxabs"
    assert "reward_norm" not in recipe_fields("paper-snn", "bptt-snntorch", set())[0]
    assert {s.field for s in RECIPES["paper-snn"]} >= {"schedule", "clip", "clip_value", "reward_norm"}
