# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The bundles' speed options: ``amp`` (bfloat16 autocast) and ``gradient_checkpointing`` reach the parsed network,
trainer, evaluators and restorer; defaults stay float32 without checkpointing; ``rat-monai infer --bf16``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from rat_monai.inference import ScanRestorer, cli
from rat_monai.networks.nets import RAT

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"

BUNDLES = ["rat_pet", "rat_ct"]


def _parser(bundle: str, name: str, overrides: dict) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / bundle / "configs" / f"{name}.json"))
    parser["bundle_root"] = str(BUNDLES_DIR / bundle)
    for key, value in overrides.items():
        parser[key] = value
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("enabled", [False, True])
def test_train_config(bundle, enabled, tiny_overrides, tiny_datasets):
    modality = bundle.split("_")[1]
    ov = dict(tiny_overrides, dataset_dir=tiny_datasets[modality], region_method="intensity")
    if enabled:
        ov.update(amp=True, gradient_checkpointing=True)
    parser = _parser(bundle, "train", ov)
    net = parser.get_parsed_content("network_def").net
    assert isinstance(net, RAT)
    assert net.amp is enabled and net.gradient_checkpointing is enabled
    assert all(block.gradient_checkpointing is enabled for block in net.middle)
    assert parser.get_parsed_content("train#trainer").amp is enabled
    assert parser.get_parsed_content("validate#evaluator").amp is enabled


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("text, enabled", [("false", False), ("False", False), ("true", True), ("ON", True), ("0", False)])
def test_switches_given_as_command_line_text(bundle, text, enabled, tiny_overrides, tiny_datasets):
    """``monai.bundle run ... --amp false`` passes the string 'false' (truthy in Python): every switch reads it as
    the bool it names, in the network, the trainer, the progress bar and the resume loader."""
    modality = bundle.split("_")[1]
    ov = dict(tiny_overrides, dataset_dir=tiny_datasets[modality], region_method="intensity")
    parser = _parser(bundle, "train", dict(ov, amp=text, gradient_checkpointing=text, progress=text))
    net = parser.get_parsed_content("network_def").net
    assert net.amp is enabled and net.gradient_checkpointing is enabled
    assert parser.get_parsed_content("train#trainer").amp is enabled
    handlers = parser["train#handlers"]
    progress = [i for i, h in enumerate(handlers) if isinstance(h, dict) and "_disabled_" in h]
    assert progress and all(parser.get_parsed_content(f"train#handlers#{i}#_disabled_") is not enabled for i in progress)
    # the resume switch alone (resuming for real needs a checkpoint): read where the loader reads it
    parser = _parser(bundle, "train", dict(ov, resume=text))
    switched = [i for i, h in enumerate(handlers) if isinstance(h, dict) and "enabled" in h]
    assert switched and all(parser.get_parsed_content(f"train#handlers#{i}#enabled") is enabled for i in switched)
    inference = _parser(bundle, "inference", {"amp": text, "use_regions": text})
    assert inference.get_parsed_content("evaluator").amp is enabled


@pytest.mark.parametrize("bundle", BUNDLES)
def test_switch_with_a_typo_stops_the_run(bundle, tiny_overrides, tiny_datasets):
    modality = bundle.split("_")[1]
    ov = dict(tiny_overrides, dataset_dir=tiny_datasets[modality], region_method="intensity", amp="flase")
    with pytest.raises(BaseException, match=r"'amp' must be true or false, got 'flase'"):
        _parser(bundle, "train", ov).get_parsed_content("network_def")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_config(bundle):
    # a tiny untrained network: not the bundle's shipped weights (they fit the default network only)
    tiny = {"width": 8, "network_def#middle_blocks": 1, "network_def#layers_per_block": 1, "untrained": True}
    default = ScanRestorer.from_bundle(BUNDLES_DIR / bundle, progress=False, **tiny)
    assert default.amp is False and default.network.net.amp is False
    fast = ScanRestorer.from_bundle(BUNDLES_DIR / bundle, progress=False, amp=True, **tiny)
    assert fast.amp is True and fast.network.net.amp is True
    assert _parser(bundle, "inference", {"amp": True}).get_parsed_content("evaluator").amp is True


def test_restorer_amp_runs_bf16():
    """ScanRestorer(amp=True) autocasts any network (here one without its own amp): close to, not equal to, fp32."""
    torch.manual_seed(0)
    from rat_monai.networks.nets import StackedRegionRAT

    net = StackedRegionRAT(width=8, middle_blocks=1, layers_per_block=1, num_heads=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    slices = np.random.default_rng(0).random((2, 32, 32), dtype=np.float32)
    regions = np.repeat(np.arange(4), 8 * 32).reshape(1, 32, 32).repeat(2, 0)
    out = {}
    for amp in (False, True):
        restorer = ScanRestorer(net, "pet", allow_untrained=True, progress=False, amp=amp)
        out[amp] = restorer.restore_slices(slices, regions)
    assert out[True].dtype == np.float32
    assert not np.array_equal(out[True], out[False])
    assert np.abs(out[True] - out[False]).max() < 0.05 * np.abs(out[False]).max()


def test_cli_bf16_flag(monkeypatch):
    """``--bf16`` becomes the config override ``amp=True`` (the constructor is captured: only the plumbing)."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    seen = {}

    class Stop(Exception):
        pass

    def capture(bundle, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(ScanRestorer, "from_bundle", staticmethod(capture))
    for argv, expected in (([], None), (["--bf16"], True)):
        seen.clear()
        args = parser.parse_args(["--bundle", "b", "--input", "i", "--output", "o"] + argv)
        with pytest.raises(Stop):
            cli.run(args)
        assert seen.get("amp") is expected
