# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""convert_official_rat_state_dict against an independent re-implementation of the authors' module layout.

The classes below follow the published ``Model_RAT.py`` layout (NAFNet skeleton, key names, qkv channel orders,
``-1000`` additive dense region mask built by comparing labels, nearest 1/4 downsampling by ``F.interpolate``,
Swin-style window partition). They are written independently of rat_monai's code on purpose.
"""

from __future__ import annotations

import unittest

import torch
import torch.nn.functional as F
from parameterized import parameterized
from torch import nn

from rat_monai.networks.nets import RAT, convert_official_rat_state_dict
from rat_monai.networks.utils import randomise_weights


class OffLayerNorm2d(nn.Module):
    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        return self.weight.view(1, -1, 1, 1) * ((x - mu) / (var + self.eps).sqrt()) + self.bias.view(1, -1, 1, 1)


class OffSimpleGate(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a * b


class OffNAFBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        dw = 2 * c
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.sg = OffSimpleGate()
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1 = OffLayerNorm2d(c)
        self.norm2 = OffLayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp):
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + x * self.gamma


class OffRegionAttention(nn.Module):  # "ra": Restormer-like channel-first attention with the dense -1000 mask
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.project_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x, mask):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=1)
        # "b (head c) h w -> b head (h w) c"
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w).transpose(-1, -2) for t in (q, k, v))
        attn = (q @ k.transpose(-2, -1)) * self.num_heads**-0.5 + mask
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.transpose(-1, -2).reshape(b, c, h, w))


class OffWindowAttention(nn.Module):  # "wa": Swin window attention without position bias
    def __init__(self, dim, num_heads, window_size):
        super().__init__()
        self.num_heads, self.ws = num_heads, window_size
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x):
        b, c, h, w = x.shape
        ws = self.ws
        t = x.permute(0, 2, 3, 1).reshape(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        t = t.reshape(-1, ws * ws, c)
        bn, n, _ = t.shape
        qkv = self.qkv(t).reshape(bn, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * self.num_heads**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        o = self.proj_out((attn @ v).transpose(1, 2).reshape(bn, n, c))
        o = o.reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        return o.permute(0, 3, 1, 2)


class OffMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class OffLayer(nn.Module):
    def __init__(self, dim, num_heads, window_size, mlp_ratio):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm_ra, self.norm_ra_mlp = OffLayerNorm2d(dim), OffLayerNorm2d(dim)
        self.norm_wa, self.norm_wa_mlp = OffLayerNorm2d(dim), OffLayerNorm2d(dim)
        self.ra = OffRegionAttention(dim, num_heads)
        self.wa = OffWindowAttention(dim, num_heads, window_size)
        self.mlp_ra, self.mlp_wa = OffMlp(dim, hidden), OffMlp(dim, hidden)
        self.lambda_ra = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.lambda_wa = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x, mask):
        x = x + self.lambda_ra * self.ra(self.norm_ra(x), mask)
        x = x + self.mlp_ra(self.norm_ra_mlp(x))
        x = x + self.lambda_wa * self.wa(self.norm_wa(x))
        return x + self.mlp_wa(self.norm_wa_mlp(x))


class OffBlock(nn.Module):
    def __init__(self, dim, n_layer, num_heads, window_size, mlp_ratio):
        super().__init__()
        self.layers = nn.ModuleList([OffLayer(dim, num_heads, window_size, mlp_ratio) for _ in range(n_layer)])
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x, mask):
        y = x
        for layer in self.layers:
            y = layer(y, mask)
        return self.conv(y) + x


class OfficialRAT(nn.Module):
    def __init__(self, img_channel=1, width=64, middle_blk_num=12, enc_blk_nums=(2, 2), dec_blk_nums=(2, 2),
                 n_layer=3, num_heads=8, window_size=4, mlp_ratio=2):
        super().__init__()
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        self.encoders, self.decoders, self.ups, self.downs = (nn.ModuleList() for _ in range(4))
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*[OffNAFBlock(chan) for _ in range(num)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, 2))
            chan *= 2
        self.middle_blks = nn.ModuleList(
            [OffBlock(chan, n_layer, num_heads, window_size, mlp_ratio) for _ in range(middle_blk_num // n_layer)]
        )
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[OffNAFBlock(chan) for _ in range(num)]))
        self.down_factor = 2 ** len(enc_blk_nums)

    def correlation_mask(self, mask):
        m = F.interpolate(mask.float(), scale_factor=1 / self.down_factor, mode="nearest").flatten(1)  # [B, N]
        same = m.unsqueeze(2) == m.unsqueeze(1)
        return torch.where(same, 0.0, -1000.0).unsqueeze(1)  # [B, 1, N, N], additive

    def forward(self, inp, mask):
        corr = self.correlation_mask(mask)
        x = self.intro(inp)
        encs = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            encs.append(x)
            x = down(x)
        y = x
        for blk in self.middle_blks:
            y = blk(y, corr)
        x = x + y
        for decoder, up, skip in zip(self.decoders, self.ups, encs[::-1]):
            x = decoder(up(x) + skip)
        return self.ending(x) + inp


# name, official kwargs, input shape (B, C, H, W), number of region labels
TEST_CASES = [
    ["small", dict(width=16, middle_blk_num=6, n_layer=3, num_heads=4), (2, 1, 32, 48), 7],
    ["rgb_3_levels", dict(img_channel=3, width=8, middle_blk_num=2, n_layer=1, num_heads=2, enc_blk_nums=(1, 1, 1),
                          dec_blk_nums=(1, 1, 1), window_size=2), (1, 3, 32, 32), 5],
]


def _ours_kwargs(kw: dict) -> dict:
    n_layer = kw.get("n_layer", 3)
    return dict(
        in_channels=kw.get("img_channel", 1),
        out_channels=kw.get("img_channel", 1),
        width=kw.get("width", 64),
        enc_blocks=kw.get("enc_blk_nums", (2, 2)),
        dec_blocks=kw.get("dec_blk_nums", (2, 2)),
        middle_blocks=kw.get("middle_blk_num", 12) // n_layer,
        layers_per_block=n_layer,
        num_heads=kw.get("num_heads", 8),
        window_size=kw.get("window_size", 4),
    )


class TestConvertOfficial(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_outputs_match(self, _, kw, shape, n_labels):
        torch.manual_seed(0)
        official = OfficialRAT(**kw).eval()
        randomise_weights(official, 1)
        x = torch.randn(shape)
        mask = torch.randint(0, n_labels, (shape[0], 1, shape[2], shape[3]))
        with torch.no_grad():
            expected = official(x, mask)
            for impl in ("packed", "dense"):
                ours = RAT(**_ours_kwargs(kw), region_attention=impl).eval()
                ours.load_state_dict(convert_official_rat_state_dict(official.state_dict()), strict=True)
                out = ours(x, mask)
                torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5, msg=f"impl={impl}")
                self.assertGreater((out - x).abs().max().item(), 1e-2)  # the network is not the identity
            # the region map matters (so the match above checks the region attention too)
            self.assertGreater((ours(x, None) - expected).abs().max().item(), 1e-4)

    def test_head_order_matters(self):
        """A converter that got the head order wrong would be caught: permuting heads inside qkv changes outputs."""
        kw = TEST_CASES[0][1]
        official = OfficialRAT(**kw).eval()
        randomise_weights(official, 2)
        x, mask = torch.randn(1, 1, 32, 32), torch.randint(0, 5, (1, 1, 32, 32))
        sd = convert_official_rat_state_dict(official.state_dict())
        c, heads = 4 * kw["width"], kw["num_heads"]
        # wrong order: head as the inner factor (channel = c * heads + head)
        perm = torch.arange(3 * c).view(3, heads, c // heads).transpose(1, 2).reshape(-1)
        key = "middle.0.layers.0.region_attn.qkv.weight"
        sd_wrong = dict(sd)
        sd_wrong[key] = sd[key][perm]
        sd_wrong[key.replace("weight", "bias")] = sd[key.replace("weight", "bias")][perm]
        ours = RAT(**_ours_kwargs(kw)).eval()
        with torch.no_grad():
            expected = official(x, mask)
            ours.load_state_dict(sd)
            torch.testing.assert_close(ours(x, mask), expected, atol=1e-5, rtol=1e-5)
            ours.load_state_dict(sd_wrong)
            self.assertGreater((ours(x, mask) - expected).abs().max().item(), 1e-4)

    def test_default_config(self):
        official = OfficialRAT()
        n_official = sum(p.numel() for p in official.parameters())
        ours = RAT()
        self.assertEqual(n_official, 15_945_025)
        self.assertEqual(sum(p.numel() for p in ours.parameters()), 15_945_025)
        sd = {"module." + k: v for k, v in official.state_dict().items()}  # saved from DataParallel
        converted = convert_official_rat_state_dict(sd)
        self.assertEqual(set(converted), set(ours.state_dict()))
        ours.load_state_dict(converted, strict=True)
        self.assertTrue(torch.equal(ours.middle[3].layers[2].region_attn.qkv.weight,
                                    official.middle_blks[3].layers[2].ra.qkv.weight))

    def test_unwrap_and_copy(self):
        official = OfficialRAT(width=8, middle_blk_num=1, n_layer=1, num_heads=2)
        converted = convert_official_rat_state_dict({"params": official.state_dict()})
        self.assertIn("conv_in.weight", converted)
        converted["conv_in.weight"].zero_()
        self.assertNotEqual(official.intro.weight.abs().sum().item(), 0.0)  # tensors are copies

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "not part of the published RAT"):
            convert_official_rat_state_dict({"intro.weight": torch.zeros(1), "foo.bar": torch.zeros(1)})
        with self.assertRaisesRegex(TypeError, "mapping"):
            convert_official_rat_state_dict([("intro.weight", torch.zeros(1))])
        with self.assertRaisesRegex(TypeError, "tensor"):
            convert_official_rat_state_dict({"intro.weight": 1.0})
        with self.assertRaisesRegex(ValueError, "map to"):
            convert_official_rat_state_dict({"intro.weight": torch.zeros(1), "module.intro.weight": torch.zeros(1)})


if __name__ == "__main__":
    unittest.main()
