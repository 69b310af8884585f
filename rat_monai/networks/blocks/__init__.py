# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.networks.blocks"""

from __future__ import annotations
from .layernorm import LayerNorm2d
from .nafblock import NAFBlock, SimpleGate
from .rat_block import ConvMlp, RATBlock, RATLayer
from .region_attention import RegionSelfAttention, region_attention
from .window_attention import WindowSelfAttention, window_partition, window_unpartition
from .bi_wkv import bi_wkv, bi_wkv_reference
from .rwkv import ChannelMix, OmniShift, RWKVBlock, SpatialMix
