"""Every default is defined once, in ModelConfig / TrainConfig: the command line, its help, the docs and the
README state the same values, and the defaults still train the README's job."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from lfp_snn.cli import build_parser, configs_from_args, main
from lfp_snn.cli import sweep as sweep_cli
from lfp_snn.cli.options import MODEL_OPTIONS, TRAIN_OPTIONS, default
from lfp_snn.models import ModelConfig
from lfp_snn.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


class _Images:
    """What configs_from_args reads of a data set: the sample shape and the classes."""

    x = torch.zeros(2, 1, 8, 8)
    classes = 10


def _subparser(name: str):
    parser = build_parser([name])
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def _action(sub, option: str):
    return next(a for a in sub._actions if option in a.option_strings)


def _parse(text: str, like):
    """A default as the docs write it -> a value comparable with ``like``."""
    text = text.strip()
    if isinstance(like, bool):
        return {"True": True, "False": False, "on": True, "off": False}[text]
    if isinstance(like, float):
        return float(text)
    if isinstance(like, int):
        return int(text)
    if like is None:
        return None if text == "none" else text
    return text


def test_an_empty_command_line_gives_the_config_defaults():
    model, train = configs_from_args(build_parser(["train"]).parse_args(["train"]), _Images())
    for f in dataclasses.fields(ModelConfig):
        if f.name not in ("input_shape", "classes"):  # from the data
            assert getattr(model, f.name) == getattr(ModelConfig(), f.name), f.name
    assert dataclasses.asdict(train) == dataclasses.asdict(TrainConfig())
    assert (model.input_shape, model.classes) == ((1, 8, 8), 10)


@pytest.mark.parametrize("command", ["train", "compare", "sweep"])
def test_help_shows_the_config_default_of_every_config_option(command):
    sub = _subparser(command)
    checked = 0
    for action in sub._actions:
        if action.dest not in (*MODEL_OPTIONS, *TRAIN_OPTIONS) or action.dest in ("hidden",):
            continue
        assert action.default is None, f"{action.option_strings}: a default of its own ({action.default!r})"
        m = re.search(r"\(default: ([^)]*)\)", action.help)
        assert m, f"{action.option_strings}: the help does not state the default"
        want = default(action.dest)
        assert _parse(m.group(1), want) == want, (action.option_strings, m.group(1), want)
        checked += 1
    assert checked >= 25 or command == "sweep"  # sweep replaces --beta, -T, --seed, --lr by grid lists


def test_grid_and_seed_lists_default_to_the_config_values():
    sweep, compare = _subparser("sweep"), _subparser("compare")
    assert _action(sweep, "--lrs").default == [TrainConfig().lr]
    assert _action(sweep, "--seeds").default == [TrainConfig().seed]
    assert _action(compare, "--seeds").default == [TrainConfig().seed]


def _table_rows(path: Path) -> list[tuple[str, str]]:
    """(first option of the row, default) for every row of a Markdown table whose first cell starts with an
    option in backticks and whose last cell is one value in backticks."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`-"):
            m = re.fullmatch(r"`([^`]*)`", cells[-1])
            if m:
                rows.append((cells[0].split("`")[1].split()[0], m.group(1)))
    return rows


def test_the_training_page_states_the_config_defaults():
    sub = _subparser("train")
    rows = _table_rows(ROOT / "docs" / "training.md")
    assert len(rows) >= 25
    for option, text in rows:
        dest = _action(sub, option).dest
        want = default(dest)
        assert _parse(text, want) == want, (option, text, want)


def test_the_sweeps_page_states_the_sweep_defaults():
    sub = _subparser("sweep")
    rows = dict(_table_rows(ROOT / "docs" / "sweeps.md"))
    assert {"--lrs", "--betas", "--seeds", "--workers", "--out"} <= set(rows)
    for option, text in rows.items():
        action = _action(sub, option)
        want = action.default
        if want is None and action.dest in (*MODEL_OPTIONS, *TRAIN_OPTIONS):
            want = default(action.dest)
        if option == "--results":  # derived from --out
            assert text == "DIR/sweep.h5" and want is None
            continue
        if want is None and option in ("--betas", "--steps-list"):  # None: the spiking defaults, or none
            want = list(sweep_cli.DEFAULT_BETAS if option == "--betas" else sweep_cli.DEFAULT_STEPS)
        if isinstance(want, list):
            assert [_parse(v, want[0]) for v in text.split()] == want, option
        else:
            assert _parse(text, want) == want, (option, text, want)


def test_the_readme_says_the_small_beta_options_are_off_by_default():
    text = (ROOT / "README.md").read_text()
    assert "all off by default" in text
    for option in ("--membrane-share", "--homeostasis", "--input-noise"):
        assert option in text
        assert default(option[2:].replace("-", "_")) == 0.0


@pytest.mark.slow
def test_the_readme_job_reaches_97_percent_with_the_defaults(tmp_path, capsys):
    """``lfp-snn train`` as the README runs it (only the output folder named): 97-98 % on digits."""
    assert main(["train", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("result ")][-1]
    assert json.loads(line[len("result ") :])["test_accuracy"] >= 0.97
