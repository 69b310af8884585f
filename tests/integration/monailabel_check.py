# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""MONAI Label serving check of the rat_pet / rat_ct bundles (manual / CI integration check, not a unit test).

MONAI Label pins numpy < 2 (through pydicom-seg and numpymaxflow), so this runs in a SEPARATE virtual environment
(``tests/integration/run_monailabel_check.sh`` builds it and calls this script). For each bundle it:

1. copies the bundle to a scratch folder (MONAI Label writes ``models/`` and the bundle writes ``eval/`` into
   ``bundle_root``; the repository is never touched) and lists the config ids MONAI Label needs that are missing
   (:func:`check_bundle_config`, also usable without monailabel);
2. simulates a tiny paired NIfTI dataset (``rat_monai.simulation.simulate_dataset``) laid out as a MONAI Label
   studies folder (``studies/<subject>.nii.gz`` = low dose, ``studies/labels/final/<subject>.nii.gz`` = full dose);
3. copies the shipped ``models/model.pt`` (served as is at the bundle's width), or writes random-init weights when
   the bundle has none (``BundleInferTask`` ignores a bundle without weights), loads the bundle with
   ``monailabel.tasks.infer.bundle.BundleInferTask`` and runs one inference request on a NIfTI volume, printing
   timings and the result's shape, dtype and range;
4. runs ``monailabel.tasks.train.bundle.BundleTrainTask`` on the studies folder (``LocalDatastore``) for a few
   iterations (tiny overrides via ``_update_overrides``, the hook MONAI Label provides for that) and prints timings;
5. runs the inference request again with the weights that training wrote (MONAI Label reloads on the file's mtime)
   and compares its result with the bundle's own restoration of the same scan (``ScanRestorer``, id ``restorer``).

Usage (inside the monailabel venv)::

    python tests/integration/monailabel_check.py [--bundles bundles/rat_pet bundles/rat_ct] [--work DIR]
        [--iterations 2] [--width 0] [--shape 64 64 6] [--device cpu]

Exit status 0 only when every step of every bundle worked. Importing this module has no side effects and needs
neither monailabel nor a dataset (pytest does not collect it: the name does not match ``test_*.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "INFER_REQUIRED_IDS",
    "TRAIN_REQUIRED_IDS",
    "check_bundle_config",
    "prepare_studies",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

#: ids BundleInferTask reads from configs/inference.json (``bundle_root`` and ``device`` are overridden by it).
INFER_REQUIRED_IDS = ("network_def", "preprocessing", "inferer", "postprocessing")
#: ids BundleTrainTask overrides / reads in configs/train.json before ``monai.bundle.run(run_id="run")``.
TRAIN_REQUIRED_IDS = (
    "network",
    "train#trainer#max_epochs",
    "train#dataset#data",
    "train#handlers",
    "validate#dataset#data",
    "run",
)
#: transforms MONAI Label cannot run in inference preprocessing (monai 1.6.1 + monailabel 0.8.5: Spacingd fails on
#: the path string MONAI Label keeps in the data; our bundles keep the native geometry anyway).
FORBIDDEN_PRE = ("Spacingd", "Spacing")


def _get(config: Mapping, id_: str) -> Any:
    node: Any = config
    for part in id_.split("#"):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(id_)
    return node


def _has(config: Mapping, id_: str) -> bool:
    try:
        _get(config, id_)
    except KeyError:
        return False
    return True


def _targets(node: Any) -> list[str]:
    """``_target_`` names (and ``$`` expressions) of a transform list / Compose config."""
    if isinstance(node, Mapping) and "transforms" in node:
        node = node["transforms"]
    if not isinstance(node, list):
        return [str(node)]
    return [str(t.get("_target_", "")) if isinstance(t, Mapping) else str(t) for t in node]


def check_bundle_config(bundle: str | os.PathLike) -> list[str]:
    """List what MONAI Label 0.8.5's BundleInferTask / BundleTrainTask need and the bundle lacks (static check).

    Args:
        bundle: bundle folder with ``configs/metadata.json``, ``configs/inference.json`` and ``configs/train.json``.

    Returns:
        human-readable problems (empty when the bundle has every id and structure those tasks use).

    Raises:
        FileNotFoundError: the folder or its ``configs/metadata.json`` does not exist.
        ValueError: a config file is not valid JSON.
    """
    bundle = Path(bundle)
    configs = bundle / "configs"
    if not (configs / "metadata.json").is_file():
        raise FileNotFoundError(f"{configs / 'metadata.json'} not found: {bundle} is not a MONAI bundle folder.")
    loaded: dict[str, dict] = {}
    for name in ("metadata.json", "inference.json", "train.json"):
        path = configs / name
        if path.is_file():
            try:
                loaded[name] = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON ({e}); fix the file.") from e
    problems: list[str] = []
    meta = loaded["metadata.json"]
    fmt = meta.get("network_data_format", {})
    for io, expected in (("inputs", "image"), ("outputs", "pred")):
        entries = fmt.get(io) or {}
        first = next(iter(entries), None)
        if first is None:
            problems.append(f"metadata.json: network_data_format#{io} is empty (MONAI Label takes its first key)")
        elif first != expected:
            # BasicInferTask feeds data["image"] to the network and stores data["pred"] whatever metadata says.
            problems.append(
                f"metadata.json: first network_data_format#{io} key is {first!r}; MONAI Label's BasicInferTask "
                f"always uses {expected!r}"
            )
    infer = loaded.get("inference.json")
    if infer is None:
        problems.append("configs/inference.json missing (BundleInferTask ignores the bundle)")
    else:
        for id_ in INFER_REQUIRED_IDS:
            if not _has(infer, id_):
                problems.append(f"inference.json: id {id_!r} missing")
        if _has(infer, "preprocessing"):
            names = _targets(_get(infer, "preprocessing"))
            if not names or "LoadImage" not in names[0]:
                problems.append(
                    "inference.json: preprocessing should start with LoadImaged (MONAI Label swaps it for "
                    f"LoadImageTensord and passes a file path under 'image'), got {names[:1]}"
                )
            bad = [n for n in names if n.split(".")[-1] in FORBIDDEN_PRE]
            if bad:
                problems.append(f"inference.json: preprocessing must not resample ({bad}): crashes in MONAI Label")
    train = loaded.get("train.json")
    if train is None:
        problems.append("configs/train.json missing (BundleTrainTask ignores the bundle)")
    else:
        for id_ in TRAIN_REQUIRED_IDS:
            if not _has(train, id_):
                problems.append(f"train.json: id {id_!r} missing")
        if _has(train, "train#handlers") and not isinstance(_get(train, "train#handlers"), list):
            problems.append("train.json: train#handlers must be a list (MONAI Label may insert a CheckpointLoader)")
    return problems


def prepare_studies(datalist: str | os.PathLike, studies: str | os.PathLike) -> list[str]:
    """Copy simulated NIfTI pairs into a MONAI Label studies folder.

    Args:
        datalist: ``datalist.json`` written by ``simulate_dataset`` (entries with NIfTI "image"/"label").
        studies: destination; images go to ``studies/<subject>.nii.gz``, labels to ``studies/labels/final/``.

    Returns:
        the image paths, sorted.

    Raises:
        FileNotFoundError: ``datalist`` or one of the files it lists does not exist.
        ValueError: the datalist has no NIfTI pairs.
    """
    datalist = Path(datalist)
    if not datalist.is_file():
        raise FileNotFoundError(f"datalist {datalist} not found; simulate a dataset first.")
    root = datalist.parent
    entries = [e for part in json.loads(datalist.read_text()).values() if isinstance(part, list) for e in part]
    pairs = [e for e in entries if str(e.get("image", "")).endswith((".nii", ".nii.gz"))]
    if not pairs:
        raise ValueError(f"{datalist} lists no NIfTI image/label pairs; simulate with formats including 'nifti'.")
    studies = Path(studies)
    (studies / "labels" / "final").mkdir(parents=True, exist_ok=True)
    images = []
    for i, e in enumerate(pairs):
        name = f"{e.get('subject', f'case{i:03d}')}.nii.gz"
        for key, dst in (("image", studies / name), ("label", studies / "labels" / "final" / name)):
            src = root / e[key]
            if not src.is_file():
                raise FileNotFoundError(f"{src} (key {key!r} of {datalist}) not found.")
            shutil.copyfile(src, dst)
        images.append(str(studies / name))
    return sorted(images)


def _say(msg: str) -> None:
    print(f"[monailabel-check] {msg}", flush=True)


def _write_random_weights(bundle: Path, overrides: Mapping[str, Any]) -> bool:
    """Save ``network_def`` of inference.json (random init, seed 0) as models/model.pt unless weights exist."""
    import torch
    from monai.bundle import ConfigParser

    model = bundle / "models" / "model.pt"
    if model.exists() or (bundle / "models" / "model.ts").exists():
        return False
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(bundle), **overrides})  # type: ignore[union-attr]
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def", instantiate=True)
    model.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), model)
    return True


def _make_tasks(overrides: Mapping[str, Any], train_overrides: Mapping[str, Any]):
    from monailabel.tasks.infer.bundle import BundleInferTask
    from monailabel.tasks.train.bundle import BundleTrainTask

    class CheckInferTask(BundleInferTask):
        """BundleInferTask with config overrides (here: the tiny width) applied right after loading."""

        def _load_bundle_config(self, path, config):
            parser = super()._load_bundle_config(path, config)
            parser.config.update(dict(overrides))
            return parser

    class CheckTrainTask(BundleTrainTask):
        """BundleTrainTask with a few-iteration budget through MONAI Label's ``_update_overrides`` hook."""

        def _update_overrides(self, o):
            o.update(dict(train_overrides))
            return o

    return CheckInferTask, CheckTrainTask


def _describe_result(path: Any) -> dict[str, Any]:
    import nibabel as nib
    import numpy as np

    if isinstance(path, str):
        img = nib.load(path)
        arr = np.asarray(img.dataobj)
        return {"file": path, "shape": tuple(arr.shape), "dtype": str(arr.dtype), "affine": img.affine,
                "min": float(arr.min()), "max": float(arr.max()), "finite": bool(np.isfinite(arr).all())}  # fmt: skip
    arr = np.asarray(path)
    return {"file": None, "shape": tuple(arr.shape), "dtype": str(arr.dtype), "affine": None,
            "min": float(arr.min()), "max": float(arr.max()), "finite": bool(np.isfinite(arr).all())}  # fmt: skip


def _infer(task: Any, image: str, device: str, tag: str) -> dict[str, Any]:
    import nibabel as nib
    import numpy as np

    t0 = time.perf_counter()
    result, result_json = task({"image": image, "device": device})
    dt = time.perf_counter() - t0
    info = _describe_result(result)
    src = nib.load(image)
    latencies = {k: v for k, v in result_json.get("latencies", {}).items() if k != "transform"}
    ok = info["finite"] and info["shape"] == tuple(src.shape)
    if info["affine"] is not None:
        ok = ok and bool(np.allclose(info["affine"], src.affine, atol=1e-3))
    _say(
        f"{tag}: {dt:.2f} s (MONAI Label latencies {latencies}); input {tuple(src.shape)} "
        f"{src.get_data_dtype()} -> result {info['shape']} {info['dtype']} range [{info['min']:.4g}, "
        f"{info['max']:.4g}], same grid as the input: {ok}"
    )
    info.update(seconds=dt, ok=ok)
    return info


def _compare_with_restorer(
    bundle: Path, image: str, result: str, out: Path, args: argparse.Namespace, overrides: Mapping[str, Any]
) -> bool:
    """Restore ``image`` with the bundle's own pipeline (``ScanRestorer``, id ``restorer``) and compare."""
    import nibabel as nib
    import numpy as np

    from rat_monai.inference import ScanRestorer

    t0 = time.perf_counter()
    restorer = ScanRestorer.from_bundle(bundle, device=args.device, progress=False, **overrides)
    restorer.run(image, out, format="nifti", overwrite=True)
    ref = nib.load(out / "restored.nii.gz")
    got = nib.load(result)
    a, b = np.asarray(ref.dataobj, dtype=np.float64), np.asarray(got.dataobj, dtype=np.float64)
    same_grid = a.shape == b.shape and bool(np.allclose(ref.affine, got.affine, atol=1e-3))
    diff = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    scale = max(float(np.abs(a).max()), 1e-6)
    ok = same_grid and diff <= 1e-3 * scale
    _say(f"{bundle.name}: bundle's own ScanRestorer on the same scan ({time.perf_counter() - t0:.2f} s): max |MONAI "
         f"Label - ScanRestorer| = {diff:.3g} (data max {scale:.4g}), same grid: {same_grid} -> "
         f"{'OK' if ok else 'DIFFERENT'}")  # fmt: skip
    return ok


def run_bundle(src: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """All steps for one bundle; returns a summary (``ok`` False when any step failed)."""
    from rat_monai.simulation import simulate_dataset

    name = src.name
    summary: dict[str, Any] = {"bundle": name, "ok": False, "problems": []}
    bundle = work / name
    if bundle.exists():
        shutil.rmtree(bundle)
    shutil.copytree(src, bundle, ignore=shutil.ignore_patterns("models", "eval", "dataset", "restored", "__pycache__"))
    (bundle / "models").mkdir(exist_ok=True)
    if (src / "models" / "model.pt").is_file():  # the shipped weights: MONAI Label serves the trained model
        shutil.copy2(src / "models" / "model.pt", bundle / "models" / "model.pt")
    problems = check_bundle_config(bundle)
    summary["problems"] = problems
    for p in problems:
        _say(f"{name}: config problem: {p}")

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    modality_code = str(next(iter(meta["network_data_format"]["inputs"].values())).get("modality", "PT")).upper()
    modality = "ct" if modality_code == "CT" else "pet"

    t0 = time.perf_counter()
    datalist = simulate_dataset(
        work / f"{name}_sim", modality=modality, subjects=args.subjects, seed=0, shape=args.shape,
        formats=("nifti",), progress=False, preview=False, overwrite=True,
    )  # fmt: skip
    images = prepare_studies(datalist, work / f"{name}_studies")
    _say(f"{name}: simulated {len(images)} {modality.upper()} NIfTI pairs {tuple(args.shape)} in "
         f"{time.perf_counter() - t0:.1f} s")  # fmt: skip

    overrides: dict[str, Any] = {}
    if args.width:
        overrides["width"] = args.width
    train_overrides = {
        **overrides,
        "max_iterations": args.iterations,
        "val_interval": args.iterations,
        "log_interval": 1,
        "batch_size": 2,
        "patch_size": args.patch,
        "num_workers": 0,
        "progress": False,
        # the request gives both splits from the datastore (val_split 0.5): the bundle's own datalist is not read, so
        # the data step of `initialize` must not simulate one (rat_monai.engines.ensure_dataset)
        "simulate_subjects": 0,
    }
    CheckInferTask, CheckTrainTask = _make_tasks(overrides, train_overrides)

    shipped = not _write_random_weights(bundle, overrides)
    if not shipped:
        _say(f"{name}: no weights in the bundle: wrote random-init network_def weights to models/model.pt")

    steps: dict[str, bool] = {}
    # --- inference ---
    try:
        t0 = time.perf_counter()
        infer = CheckInferTask(str(bundle), conf={})
        _say(f"{name}: BundleInferTask loaded in {time.perf_counter() - t0:.2f} s; valid={infer.is_valid()}; "
             f"type={infer.type}, dimension={infer.dimension}, labels={infer.labels}, "
             f"version={infer.version}")  # fmt: skip
        if not infer.is_valid():
            raise RuntimeError("BundleInferTask rejected the bundle (see the warning above)")
        label = f"{name}: infer request #1 ({'shipped' if shipped else 'untrained'} weights)"
        summary["infer"] = _infer(infer, images[0], args.device, label)
        steps["infer"] = summary["infer"]["ok"]
    except Exception:  # report and go on with training
        traceback.print_exc()
        _say(f"{name}: inference FAILED")
        steps["infer"] = False
        infer = None

    # --- training ---
    try:
        from monailabel.datastore.local import LocalDatastore

        datastore = LocalDatastore(str(work / f"{name}_studies"), extensions=["*.nii.gz"], auto_reload=False)
        _say(f"{name}: datastore has {len(datastore.datalist())} labelled studies")
        model_pt = bundle / "models" / "model.pt"
        before = model_pt.stat().st_mtime_ns if model_pt.exists() else None
        t0 = time.perf_counter()
        train = CheckTrainTask(str(bundle), conf={})
        if not train.is_valid():
            raise RuntimeError("BundleTrainTask rejected the bundle (see the warning above)")
        request = {
            "model": name, "max_epochs": 1, "val_split": 0.5, "device": args.device, "pretrained": True,
            "multi_gpu": False, "tracking": "None",
        }  # fmt: skip
        train(request, datastore)
        dt = time.perf_counter() - t0
        after = model_pt.stat().st_mtime_ns if model_pt.exists() else None
        ckpts = sorted(p.name for p in (bundle / "models").glob("*.pt"))
        _say(f"{name}: BundleTrainTask run ({args.iterations} iterations, overrides {train_overrides}) took "
             f"{dt:.1f} s; "
             f"models/: {ckpts}; model.pt rewritten by validation: {after != before}")  # fmt: skip
        summary["train"] = {"seconds": dt, "checkpoints": ckpts, "model_updated": after != before}
        steps["train"] = after != before and any("final" in c for c in ckpts)
    except Exception:
        traceback.print_exc()
        _say(f"{name}: training FAILED")
        steps["train"] = False

    # --- inference with the trained weights ---
    if infer is not None and steps.get("train"):
        try:
            summary["infer_trained"] = _infer(infer, images[-1], args.device, f"{name}: infer request #2 (trained)")
            steps["infer_trained"] = summary["infer_trained"]["ok"]
        except Exception:
            traceback.print_exc()
            steps["infer_trained"] = False
        if steps.get("infer_trained") and summary["infer_trained"]["file"] and not args.no_reference:
            try:
                steps["same_as_bundle_run"] = _compare_with_restorer(
                    bundle, images[-1], summary["infer_trained"]["file"], work / f"{name}_restorer", args, overrides
                )
            except Exception:
                traceback.print_exc()
                steps["same_as_bundle_run"] = False
    summary["steps"] = steps
    summary["ok"] = bool(steps) and all(steps.values())
    _say(f"{name}: steps {steps} -> {'OK' if summary['ok'] else 'FAILED'}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="+", default=[str(REPO_ROOT / "bundles" / b) for b in ("rat_pet", "rat_ct")])
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary folder, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--iterations", type=int, default=2, help="training iterations. Defaults to 2.")
    parser.add_argument(
        "--width", type=int, default=0,
        help="network width override (0: the bundle's, which serves the shipped weights). Defaults to 0.",
    )
    parser.add_argument("--patch", type=int, default=32, help="training patch size. Defaults to 32.")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 6], help="simulated volume X Y Z.")
    parser.add_argument("--subjects", type=int, default=3, help="simulated pairs per bundle. Defaults to 3.")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda'. Defaults to cpu.")
    parser.add_argument("--no-reference", action="store_true", help="skip the comparison with ScanRestorer")
    parser.add_argument("--static-only", action="store_true", help="only list missing config ids (no monailabel)")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be >= 1")

    bundles = [Path(b).resolve() for b in args.bundles]
    for b in bundles:
        if not (b / "configs" / "metadata.json").is_file():
            parser.error(f"{b} is not a bundle folder (no configs/metadata.json)")
    if args.static_only:
        bad = 0
        for b in bundles:
            problems = check_bundle_config(b)
            bad += bool(problems)
            _say(f"{b.name}: " + ("OK" if not problems else "; ".join(problems)))
        return int(bad > 0)

    import monai
    import numpy
    import torch

    try:
        import monailabel
    except ImportError:
        _say("monailabel is not installed here: run tests/integration/run_monailabel_check.sh (separate venv)")
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _say(f"python {sys.version.split()[0]}, monailabel {monailabel.__version__}, monai {monai.__version__}, "
         f"torch {torch.__version__}, numpy {numpy.__version__}, device {args.device}, "
         f"threads {torch.get_num_threads()}")  # fmt: skip

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rat_monailabel_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summaries = []
    try:
        for b in bundles:
            summaries.append(run_bundle(b, work, args))
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    ok = all(s["ok"] for s in summaries)
    _say(f"total {time.perf_counter() - t0:.1f} s: " + ", ".join(f"{s['bundle']} {'OK' if s['ok'] else 'FAILED'}"
                                                              for s in summaries))  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
