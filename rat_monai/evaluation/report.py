# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Result files of ``rat-monai evaluate``: ``<out>/evaluation_<name>.json`` and ``.md`` (tables + findings)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["markdown_report", "findings", "write_report"]


def _label(metric: str) -> str:
    from .runner import METRICS

    return METRICS[metric][0]


def _fmt(x: float, digits: int) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _digits(metric: str) -> int:
    return 4 if metric == "ssim" else 2


def findings(result: dict[str, Any]) -> list[str]:
    """One line per (level, method) listing the metrics whose bootstrap interval of the difference excludes 0."""
    ref, out = result["reference"], []
    for level in ("volume", "slice"):
        for name, entry in result["summary"][level].items():
            parts = []
            for metric in result["metrics"]:
                b = entry[metric].get("vs_reference")
                if b and b["excludes_zero"]:
                    d = _digits(metric)
                    parts.append(
                        f"{_label(metric)} {_fmt(b['mean_diff'], d)} [{_fmt(b['ci_low'], d)}, {_fmt(b['ci_high'], d)}]"
                    )
            if parts:
                n = max(entry[m]["vs_reference"]["n"] for m in result["metrics"])
                out.append(f"per {level}, {name} - {ref} (n={n}): " + "; ".join(parts))
    return out


def markdown_report(result: dict[str, Any], title: str | None = None) -> str:
    """The Markdown tables (mean ± std, then the differences against the reference) and the findings."""
    ms, ref, metrics = result["metric_settings"], result["reference"], result["metrics"]
    lines = [
        f"# {title or 'Evaluation'}",
        "",
        f"- modality: {result['modality'].upper()}; test split `{result['test_split']}`: "
        f"{len(result['test_volumes'])} volume(s) ({', '.join(result['test_volumes'])}), {result['test_slices']} "
        f"slices; classical methods tuned on `{result['tune_split']}`",
        f"- data range: {ms['data_range_rule']}",
        f"- region PSNR: {ms['region_psnr_rule']}; region map `{ms['region_map'].get('method')}`",
    ]
    if "hot_rule" in ms:
        lines.append(f"- SUV bias: {ms['hot_rule']}; bias = 100 x (method - full dose) / full dose")
    b = result["bootstrap"]
    lines += [
        f"- differences: method - {ref}, paired bootstrap {int(b['confidence'] * 100)} % interval "
        f"({b['n_boot']} resamples, seed {b['seed']}); slices of one patient are correlated, so per-slice intervals "
        "are narrower than the per-volume ones",
        "",
    ]
    for level in ("volume", "slice"):
        table = result["summary"][level]
        lines += [f"## Per {level} (mean ± std)", ""]
        lines.append("| method | n | " + " | ".join(_label(m) for m in metrics) + " |")
        lines.append("| --- | --- |" + " --- |" * len(metrics))
        for name, entry in table.items():
            n = max((entry[m]["n"] for m in metrics), default=0)
            cells = [f"{_fmt(entry[m]['mean'], _digits(m))} ± {_fmt(entry[m]['std'], _digits(m))}" for m in metrics]
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
        lines += ["", f"### Per {level}: difference against {ref} (mean [95 % interval])", ""]
        lines.append("| method | " + " | ".join(_label(m) for m in metrics) + " |")
        lines.append("| --- |" + " --- |" * len(metrics))
        for name, entry in table.items():
            if name == ref:
                continue
            cells = []
            for m in metrics:
                bb, d = entry[m]["vs_reference"], _digits(m)
                mark = " *" if bb["excludes_zero"] else ""
                cells.append(f"{_fmt(bb['mean_diff'], d)} [{_fmt(bb['ci_low'], d)}, {_fmt(bb['ci_high'], d)}]{mark}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["`*`: the interval excludes 0.", "", "## Findings", ""]
    found = findings(result)
    lines += [f"- {f}" for f in found] if found else ["- no difference against the reference excludes 0."]
    if result.get("tuning"):
        lines += ["", "## Tuning (validation split, mean slice PSNR)", ""]
        for d, t in result["tuning"].items():
            grid = ", ".join(f"{k:g}: {v:.2f}" for k, v in t["mean_psnr_by_strength"].items())
            on = f" on the {t['stabilize']} of the image" if t.get("stabilize") else ""
            lines.append(f"- {d}{on}: best {t['best']:g} on {t['validation_slices']} slices ({grid})")
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write ``evaluation_<name>.json`` (everything, per slice included) and ``evaluation_<name>.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"evaluation_{name}.json", out / f"evaluation_{name}.md"

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    js.write_text(json.dumps(clean(result), indent=1) + "\n", encoding="utf-8")
    md.write_text(markdown_report(result, title=f"Evaluation: {name}"), encoding="utf-8")
    return js, md
