# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""RAT speed options against their references: the channels-last fast path (``layout="nhwc"``) vs the plain NCHW
path, finer packing buckets, activation checkpointing, bfloat16 autocast, and unchanged state-dict keys."""

from __future__ import annotations

import hashlib
import io
import unittest

import numpy as np
import torch
from parameterized import parameterized

from rat_monai.networks.blocks import LayerNorm2d, NAFBlock, RATLayer, RegionSelfAttention, WindowSelfAttention
from rat_monai.networks.blocks.nhwc import nchw_to_nhwc, nhwc_to_nchw, pixel_shuffle_nhwc
from rat_monai.networks.blocks.region_attention import _packed_tokens, packed_score_work
from rat_monai.networks.nets import RAT, StackedRegionRAT
from rat_monai.networks.utils import randomise_weights

# RAT kwargs, image shape, region label range
NET_CASES = [
    [dict(width=8, middle_blocks=2, layers_per_block=1, num_heads=2), (2, 1, 37, 53), (-3, 6)],
    [dict(width=8, middle_blocks=1, layers_per_block=2, num_heads=4, region_attention="dense"), (1, 1, 32, 48), (0, 4)],
    [dict(width=4, enc_blocks=(1, 1, 1), dec_blocks=(1, 0, 1), window_size=2, num_heads=2), (1, 1, 33, 30), (0, 9)],
    [dict(width=8, in_channels=3, out_channels=2, middle_blocks=1, layers_per_block=1), (1, 3, 16, 24), (0, 3)],
]


def _weights(shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    return torch.cos(torch.arange(int(np.prod(shape)), dtype=dtype).reshape(shape) * 0.37)


def _run(net: torch.nn.Module, x: torch.Tensor, regions: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Output, input gradient and every parameter gradient of a fixed non-trivial loss."""
    xi = x.clone().requires_grad_()
    out = net(xi, regions)
    (out * _weights(out.shape, out.dtype)).sum().backward()
    res = {"out": out.detach(), "input": xi.grad}
    res.update({n: p.grad.clone() for n, p in net.named_parameters()})
    net.zero_grad()
    return res


def _assert_close_rel(test: unittest.TestCase, a: dict, b: dict, tol: float) -> None:
    """The output within ``tol`` of its scale, every gradient within ``tol`` of the largest gradient (float32
    summation order differs between the paths; a bias gradient sums thousands of terms)."""
    test.assertEqual(a.keys(), b.keys())
    grad_scale = max(float(v.abs().max()) for k, v in a.items() if k != "out")
    for key in a:
        scale = max(float(a[key].abs().max()), 1.0) if key == "out" else grad_scale
        err = float((b[key] - a[key]).abs().max())
        test.assertLessEqual(err, tol * scale, f"{key}: max difference {err:.3g} > {tol:g} x {scale:.3g}")


class TestFastPathEqualsReference(unittest.TestCase):
    @parameterized.expand(NET_CASES)
    def test_network_values_and_gradients(self, kwargs, shape, label_range):
        torch.manual_seed(0)
        ref = randomise_weights(RAT(layout="nchw", **kwargs))
        fast = RAT(**kwargs)
        fast.load_state_dict(ref.state_dict())
        x = torch.randn(shape)
        regions = torch.randint(*label_range, (shape[0], shape[2], shape[3]))
        # float32: equal to rounding (1e-5 of the output's / the gradients' scale)
        _assert_close_rel(self, _run(ref, x, regions), _run(fast, x, regions), 1e-5)
        # float64: the same function, not merely close (1e-10)
        ref64, fast64 = _run(ref.double(), x.double(), regions), _run(fast.double(), x.double(), regions)
        _assert_close_rel(self, ref64, fast64, 1e-10)

    def test_blocks(self):
        torch.manual_seed(1)
        x = torch.randn(2, 16, 9, 12, dtype=torch.float64)
        regions = torch.randint(0, 4, (2, 9, 12))
        for block, args in [
            (LayerNorm2d(16), ()),
            (NAFBlock(16), ()),
            (WindowSelfAttention(16, 4, 4), ()),
            (RegionSelfAttention(16, 4), (regions,)),
            (RegionSelfAttention(16, 4, impl="dense"), (regions,)),
            (RATLayer(16, 4, 4), (regions,)),
        ]:
            block = randomise_weights(block).double()
            out = nhwc_to_nchw(block.forward_nhwc(nchw_to_nhwc(x), *args))
            torch.testing.assert_close(out, block(x, *args), atol=1e-12, rtol=0, msg=type(block).__name__)

    def test_pixel_shuffle(self):
        x = torch.randn(2, 12, 5, 7)
        torch.testing.assert_close(nhwc_to_nchw(pixel_shuffle_nhwc(nchw_to_nhwc(x), 2)), torch.nn.PixelShuffle(2)(x))

    def test_script_and_no_grad(self):
        net = randomise_weights(RAT(width=8, middle_blocks=1, layers_per_block=1, num_heads=2)).eval()
        ref = RAT(width=8, middle_blocks=1, layers_per_block=1, num_heads=2, layout="nchw").eval()
        ref.load_state_dict(net.state_dict())
        x, regions = torch.randn(1, 1, 20, 28), torch.randint(0, 5, (1, 20, 28))
        with torch.no_grad():
            torch.testing.assert_close(torch.jit.script(net)(x, regions), ref(x, regions), atol=1e-5, rtol=0)


class TestStateDictKeys(unittest.TestCase):
    # sha256 of "key:shape" lines of the state dicts before the fast path existed (commit a98c240)
    OLD_KEYS = {
        "RAT()": (474, "3e8bf132f9a430873f0b93c56b8ebf5c97ba69dfa2c3d65027bcf04853772bb1"),
        "StackedRegionRAT(width=16)": (474, "c961988f00379715f88fe1c7eaefc2615f068400403e8854b9708c8e80a3daec"),
    }

    def test_keys_and_shapes_unchanged(self):
        for name, net in (("RAT()", RAT()), ("StackedRegionRAT(width=16)", StackedRegionRAT(width=16))):
            sd = net.state_dict()
            text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sd.items())
            self.assertEqual((len(sd), hashlib.sha256(text.encode()).hexdigest()), self.OLD_KEYS[name], name)

    def test_round_trip_between_layouts(self):
        kwargs = dict(width=8, middle_blocks=1, layers_per_block=1, num_heads=2)
        fast = randomise_weights(RAT(gradient_checkpointing=True, amp=False, **kwargs)).eval()
        buffer = io.BytesIO()
        torch.save(fast.state_dict(), buffer)
        buffer.seek(0)
        ref = RAT(layout="nchw", **kwargs).eval()
        ref.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
        x, regions = torch.randn(1, 1, 16, 20), torch.randint(0, 3, (1, 16, 20))
        with torch.no_grad():
            torch.testing.assert_close(ref(x, regions), fast(x, regions), atol=1e-5, rtol=0)


class TestPackedBuckets(unittest.TestCase):
    def test_finer_buckets_are_exact_and_waste_less(self):
        torch.manual_seed(2)
        # regions of very different sizes: 1, 3, 5, ..., 61 tokens (961 tokens), shuffled
        sizes = torch.arange(1, 63, 2)
        regions = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)[torch.randperm(int(sizes.sum()))]
        regions = regions.reshape(1, 31, 31).reshape(1, -1)
        qkv = torch.randn(regions.numel(), 3 * 2 * 8, dtype=torch.float64)
        outs = [_packed_tokens(qkv, 2, 8, regions, 0.5, 2**12, k) for k in (1, 4, 16)]
        torch.testing.assert_close(outs[1], outs[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(outs[2], outs[0], atol=1e-12, rtol=0)
        self.assertEqual(packed_score_work(regions, 4)[0], int((sizes**2).sum()))
        # padding waste: regions of 32 .. 92 tokens (small ones share a bucket on purpose)
        sizes = torch.arange(32, 93, 4)
        regions = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)[None]
        exact, coarse = packed_score_work(regions, 1)
        _, fine = packed_score_work(regions, 4)
        self.assertEqual(exact, int((sizes**2).sum()))
        self.assertLess(fine, coarse)
        self.assertLessEqual(fine, 2**0.5 * exact)  # a bucket's sizes differ by at most ~2**(1/4)


class TestGradientCheckpointing(unittest.TestCase):
    def test_same_gradients(self):
        kwargs = dict(width=8, middle_blocks=2, layers_per_block=2, num_heads=2)
        plain = randomise_weights(RAT(**kwargs), 3).train()
        ckpt = RAT(gradient_checkpointing=True, **kwargs).train()
        ckpt.load_state_dict(plain.state_dict())
        self.assertTrue(all(b.gradient_checkpointing for b in ckpt.middle))
        x, regions = torch.randn(2, 1, 24, 20), torch.randint(0, 4, (2, 24, 20))
        a, b = _run(plain, x, regions), _run(ckpt, x, regions)
        for key in a:  # recomputation repeats the same kernels: bitwise equal
            torch.testing.assert_close(b[key], a[key], atol=0, rtol=0, msg=key)

    def test_saves_fewer_activations(self):
        """With checkpointing, autograd keeps far fewer tensors for backward (what makes batch 8 fit)."""
        kwargs = dict(width=8, middle_blocks=1, layers_per_block=2, num_heads=2)
        x, regions = torch.randn(1, 1, 32, 32), torch.randint(0, 4, (1, 32, 32))
        saved = {}
        for flag in (False, True):
            net = RAT(gradient_checkpointing=flag, **kwargs).train()
            count = [0]

            def pack(t, count=count):
                count[0] += t.numel()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                net(x, regions).sum()
            saved[flag] = count[0]
        self.assertLess(saved[True], saved[False] / 3)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "layout"):
            RAT(layout="nchw", gradient_checkpointing=True)
        with self.assertRaisesRegex(ValueError, "layout must be one of"):
            RAT(layout="channels_last")


class TestBF16(unittest.TestCase):
    def test_amp_option_cpu(self):
        kwargs = dict(width=8, middle_blocks=1, layers_per_block=1, num_heads=2)
        net = randomise_weights(RAT(**kwargs)).eval()
        amp = RAT(amp=True, **kwargs).eval()
        amp.load_state_dict(net.state_dict())
        x, regions = torch.randn(1, 1, 32, 32), torch.randint(0, 4, (1, 32, 32))
        with torch.no_grad():
            ref, out = net(x, regions), amp(x, regions)
        self.assertEqual(out.dtype, torch.float32)
        self.assertFalse(torch.equal(out, ref))  # bfloat16 really ran
        self.assertLess(float((out - ref).abs().max()), 0.05 * float(ref.abs().max()))

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_amp_option_cuda(self):
        kwargs = dict(width=8, middle_blocks=1, layers_per_block=1, num_heads=2)
        net = randomise_weights(RAT(**kwargs)).eval().cuda()
        amp = RAT(amp=True, **kwargs).eval().cuda()
        amp.load_state_dict(net.state_dict())
        x, regions = torch.randn(1, 1, 64, 64).cuda(), torch.randint(0, 4, (1, 64, 64)).cuda()
        with torch.no_grad():
            ref, out = net(x, regions), amp(x, regions)
        self.assertEqual(out.dtype, torch.float32)
        self.assertLess(float((out - ref).abs().max()), 0.05 * float(ref.abs().max()))


if __name__ == "__main__":
    unittest.main()


def test_bf16_close_to_fp32_on_real_slices(real_pet_dir, real_ct_dir):
    """bfloat16 autocast vs float32 on real slices with their default offline region maps: PSNR >= 45 dB (peak =
    range of the float32 output). Full-depth RAT at half the paper width, seeded fan-in weights with active layer
    scales (untrained weights would leave the RAT middle at identity). CT is cropped to its central 192^2."""
    from rat_monai.data import load_volume, normalize_units
    from rat_monai.regions import get_partitioner

    net = randomise_weights(RAT(width=32), 7).eval()
    amp = RAT(width=32, amp=True).eval()
    amp.load_state_dict(net.state_dict())
    for modality, folder, crop in (("pet", real_pet_dir, 128), ("ct", real_ct_dir, 192)):
        vol = load_volume(str(folder))
        sl = vol[0, :, :, vol.shape[-1] // 2].T.numpy()[None]  # [1, H, W] in SUV / HU
        regions = torch.as_tensor(get_partitioner("auto", modality=modality)(sl).astype(np.int64))
        x = torch.as_tensor(normalize_units(sl, modality), dtype=torch.float32)[:, None]
        top = (sl.shape[1] - crop) // 2
        x, regions = x[..., top : top + crop, top : top + crop], regions[:, top : top + crop, top : top + crop]
        with torch.no_grad():
            ref, out = net(x, regions), amp(x, regions)
        assert out.dtype == torch.float32 and not torch.equal(out, ref)
        mse = float((out.double() - ref.double()).pow(2).mean())
        psnr = 10 * np.log10(float(ref.max() - ref.min()) ** 2 / mse)
        print(f"bf16 vs fp32 on the real {modality} slice: {psnr:.1f} dB")
        assert psnr >= 45.0, f"{modality}: {psnr:.1f} dB"


def test_use_region_attention_false_is_wmsa_only():
    """use_region_attention=False: the output ignores the region map, R-MSA gets no gradient, keys are unchanged."""
    torch.manual_seed(0)
    kwargs = {"width": 8, "middle_blocks": 1, "layers_per_block": 1}
    full, wmsa = RAT(**kwargs), RAT(use_region_attention=False, **kwargs)
    assert list(full.state_dict()) == list(wmsa.state_dict())
    wmsa.load_state_dict(full.state_dict())
    for net in (full, wmsa):  # non-zero layer scales, so R-MSA would change the output if it ran
        for name, p in net.named_parameters():
            if name.endswith("scale_region") or name.endswith("scale_window"):
                torch.nn.init.constant_(p, 0.5)
    x = torch.rand(1, 1, 32, 32)
    one = torch.zeros(1, 32, 32, dtype=torch.long)
    split = (torch.arange(32) >= 16).long().view(1, 1, 32).expand(1, 32, 32)
    assert not torch.allclose(full(x, one), full(x, split))
    for layout in ("nhwc", "nchw"):
        wmsa.layout = layout
        torch.testing.assert_close(wmsa(x, one), wmsa(x, split), rtol=0, atol=0)
    wmsa.layout = "nhwc"
    wmsa(x, split).sum().backward()
    grads = {n: p.grad for n, p in wmsa.named_parameters()}
    assert all(g is None for n, g in grads.items() if ".region_attn." in n or n.endswith("scale_region"))
    assert all(g is not None for n, g in grads.items() if ".window_attn." in n)
