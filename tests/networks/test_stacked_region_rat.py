# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""StackedRegionRAT (single-input bundle wrapper): equals RAT, label rounding, TorchScript, bounded 512^2 memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import pytest
import torch
from parameterized import parameterized

from rat_monai.networks.nets import RAT, StackedRegionRAT
from rat_monai.networks.region_channel import stack_regions
from rat_monai.networks.utils import randomise_weights

SMALL = dict(width=8, middle_blocks=2, layers_per_block=1, num_heads=2)


# in_channels, out_channels, image H, W, region_attention
TEST_CASES = [
    [1, 1, 32, 32, "packed"],
    [3, 3, 21, 30, "packed"],
    [1, 1, 19, 40, "dense"],
]


class TestStackedRegionRAT(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_equals_rat(self, cin, cout, h, w, impl):
        wrapper = randomise_weights(StackedRegionRAT(cin, cout, region_attention=impl, **SMALL), 1).eval()
        self.assertTrue(all(k.startswith("net.") for k in wrapper.state_dict()))
        net = RAT(cin, cout, region_attention=impl, **SMALL).eval()
        net.load_state_dict({k[len("net.") :]: v for k, v in wrapper.state_dict().items()})
        image = torch.randn(2, cin, h, w)
        regions = torch.randint(-4, 7, (2, 1, h, w))
        stacked = stack_regions(image, regions)
        with torch.no_grad():
            out = wrapper(stacked)
            self.assertEqual(out.shape, (2, cout, h, w))
            torch.testing.assert_close(out, net(image, regions), atol=0, rtol=0)
            # labels arriving as floats with small errors (e.g. after resampling) are rounded
            noisy = torch.cat([image, regions.float() + 0.3 * (torch.rand(2, 1, h, w) - 0.5)], dim=1)
            torch.testing.assert_close(wrapper(noisy), out, atol=0, rtol=0)
            # the region channel is used
            other = torch.cat([image, torch.zeros(2, 1, h, w)], dim=1)
            self.assertGreater((wrapper(other) - out).abs().max().item(), 1e-5)

    @parameterized.expand([["packed"], ["dense"]])
    def test_script(self, impl):
        wrapper = randomise_weights(StackedRegionRAT(region_attention=impl, **SMALL), 2).eval()
        scripted = torch.jit.script(wrapper)
        x = stack_regions(torch.randn(2, 1, 27, 35), torch.randint(0, 6, (2, 1, 27, 35)))
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), wrapper(x), atol=1e-5, rtol=0)
        # round trip through a file, as MONAI's ckpt_export / load do
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "net.ts")
            torch.jit.save(scripted, path)
            loaded = torch.jit.load(path, map_location="cpu")
            with torch.no_grad():
                torch.testing.assert_close(loaded(x), wrapper(x), atol=1e-5, rtol=0)

    def test_ill_arg(self):
        wrapper = StackedRegionRAT(**SMALL)
        with self.assertRaisesRegex(ValueError, r"in_channels \+ 1 = 2"):
            wrapper(torch.randn(1, 1, 16, 16))
        with self.assertRaisesRegex(ValueError, "divisible"):
            StackedRegionRAT(width=10, num_heads=3)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, torch
    from rat_monai.networks.nets import RAT, StackedRegionRAT
    from rat_monai.networks.region_channel import stack_regions
    torch.set_num_threads(1)  # OpenMP spin-waits make 2 threads ~10x slower on a busy 2-core host
    kw = dict(width=8, middle_blocks=1, layers_per_block=1, num_heads=2)
    x = torch.randn(1, 1, 512, 512)
    yy, xx = torch.meshgrid(torch.arange(512), torch.arange(512), indexing="ij")
    regions = (yy // 86) * 6 + xx // 86  # 36 blocks
    net, wrapper = RAT(**kw).eval(), StackedRegionRAT(**kw).eval()
    stacked = stack_regions(x, regions[None, None])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.no_grad():
        a = net(x)  # regions=None: one region of all 16,384 latent tokens
        b = wrapper(stacked)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"base_mib": base, "rss_mib": rss, "shapes": [list(a.shape), list(b.shape)]}))
    """
)


@pytest.mark.slow
class TestBoundedMemory512(unittest.TestCase):
    def test_no_grad_512(self):
        """At 512^2 one dense score matrix per head is 1 GiB (2 heads here: 2 GiB of scores plus the 256 MiB mask);
        the packed path must add far less than that on top of the interpreter, torch and the model."""
        res = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, timeout=600)
        self.assertEqual(res.returncode, 0, res.stderr[-2000:])
        report = json.loads(res.stdout.strip().splitlines()[-1])
        self.assertEqual(report["shapes"], [[1, 1, 512, 512], [1, 1, 512, 512]])
        self.assertLess(report["rss_mib"] - report["base_mib"], 600)


if __name__ == "__main__":
    unittest.main()
