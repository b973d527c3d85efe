"""Named training recipes: sets of config values a paper trained with, applied where the run does not set
the value itself.

``paper-snn``: the authors' setup for spiking networks (their LFP-SNN training code and the paper's
spiking experiments): Adam, learning rate 10⁻³ peaking in a OneCycle schedule stepped every batch, the
authors' unit-wise update clipping at λ = 0.06 (:func:`lfp_snn.training.updates.clip_unitwise`, for every
method, the BPTT baselines included, as their code clips both), and, for LFP, the reward normalised by its
maximum absolute value at every LIF layer and step (``FeedbackPlan.reward_norm="maxabs"``); β = 0.9 and
T = 25 steps. Their code steps OneCycle before each batch, ours after it: the same schedule shifted by one
of its (here) hundreds of steps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    field: str  # a ModelConfig or TrainConfig field
    value: object
    lfp_only: bool = False  # applies to LFP methods only (other methods keep the field's default)


RECIPES: dict[str, tuple[Setting, ...]] = {
    "paper-snn": (
        Setting("optimizer", "adam"),
        Setting("lr", 1e-3),
        Setting("schedule", "onecycle"),
        Setting("clip", "agc-unit"),
        Setting("clip_value", 0.06),
        Setting("reward_norm", "maxabs", lfp_only=True),
        Setting("beta", 0.9),
        Setting("steps", 25),
    ),
}
"""Recipe name -> its settings."""


def recipe_fields(name: str, method: str, given: set[str]) -> tuple[dict[str, object], list[str]]:
    """``(fields, overridden)``: the recipe's values for a run of ``method`` (``"lfp"`` or another method),
    without the fields in ``given`` (set by the user, who wins) and without LFP-only settings for other
    methods; ``overridden`` lists the recipe's settings the user's values replace."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; recipes are {sorted(RECIPES)}")
    fields, overridden = {}, []
    for s in RECIPES[name]:
        if s.lfp_only and method != "lfp":
            continue
        if s.field in given:
            overridden.append(f"{s.field}={s.value!r}")
            continue
        fields[s.field] = s.value
    return fields, overridden


def describe(name: str) -> str:
    """One line: the recipe's settings."""
    return ", ".join(f"{s.field}={s.value}" + (" (LFP)" if s.lfp_only else "") for s in RECIPES[name])
