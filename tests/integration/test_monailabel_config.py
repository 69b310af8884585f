# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Static part of the MONAI Label check (runs in the project venv; monailabel itself is not needed)."""

from __future__ import annotations

import copy
import json
import sys
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from parameterized import parameterized

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monailabel_check as mlc  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

META = {"network_data_format": {"inputs": {"image": {"spatial_shape": ["*", "*"]}}, "outputs": {"pred": {}}}}
INFER = {
    "network_def": {"_target_": "torch.nn.Identity"},
    "preprocessing": {"_target_": "Compose", "transforms": [{"_target_": "LoadImaged", "keys": "image"}]},
    "inferer": {"_target_": "SimpleInferer"},
    "postprocessing": {"_target_": "Compose", "transforms": []},
}
TRAIN = {
    "network": "$@network_def",
    "train": {"trainer": {"max_epochs": 1}, "dataset": {"data": []}, "handlers": []},
    "validate": {"dataset": {"data": []}},
    "run": ["$@train#trainer.run()"],
}


def _drop(cfg: dict, id_: str) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, last = id_.split("#")
    node = cfg
    for p in parents:
        node = node[p]
    del node[last]
    return cfg


def _spacing(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["preprocessing"]["transforms"].append({"_target_": "Spacingd", "keys": "image", "pixdim": [1, 1, 1]})
    return cfg


def _no_loader(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["preprocessing"]["transforms"] = [{"_target_": "EnsureChannelFirstd", "keys": "image"}]
    return cfg


def _meta_key(meta: dict, io: str, key: str) -> dict:
    meta = copy.deepcopy(meta)
    meta["network_data_format"][io] = {key: {}}
    return meta


CASES = [
    ("complete", META, INFER, TRAIN, []),
    *[(f"infer_no_{i}", META, _drop(INFER, i), TRAIN, [f"'{i}' missing"]) for i in mlc.INFER_REQUIRED_IDS],
    *[(f"train_no_{i}", META, INFER, _drop(TRAIN, i), [f"'{i}' missing"]) for i in mlc.TRAIN_REQUIRED_IDS],
    ("spacing", META, _spacing(INFER), TRAIN, ["must not resample"]),
    ("no_loader", META, _no_loader(INFER), TRAIN, ["should start with LoadImaged"]),
    ("input_key", _meta_key(META, "inputs", "img"), INFER, TRAIN, ["always uses 'image'"]),
    ("output_key", _meta_key(META, "outputs", "out"), INFER, TRAIN, ["always uses 'pred'"]),
    ("no_infer_file", META, None, TRAIN, ["inference.json missing"]),
    ("no_train_file", META, INFER, None, ["train.json missing"]),
]


def _write_bundle(root: Path, meta: dict, infer: dict | None, train: dict | None) -> Path:
    (root / "configs").mkdir(parents=True)
    for name, cfg in (("metadata.json", meta), ("inference.json", infer), ("train.json", train)):
        if cfg is not None:
            (root / "configs" / name).write_text(json.dumps(cfg))
    return root


class TestCheckBundleConfig(unittest.TestCase):
    def setUp(self):
        import tempfile

        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    @parameterized.expand(CASES)
    def test_problems(self, name, meta, infer, train, expected):
        problems = mlc.check_bundle_config(_write_bundle(self.tmp / name, meta, infer, train))
        self.assertEqual(len(problems), len(expected), problems)
        for fragment, problem in zip(expected, problems):
            self.assertIn(fragment, problem)

    @parameterized.expand([("rat_pet",), ("rat_ct",)])
    def test_repo_bundles(self, bundle):
        # the real bundles must keep every id BundleInferTask and BundleTrainTask use
        path = REPO / "bundles" / bundle
        if not (path / "configs" / "metadata.json").is_file():
            self.skipTest(f"{path} has no metadata.json yet")
        problems = mlc.check_bundle_config(path)
        self.assertEqual(problems, [])

    def test_ill_arg(self):
        with self.assertRaises(FileNotFoundError):
            mlc.check_bundle_config(self.tmp / "absent")
        bundle = _write_bundle(self.tmp / "bad", META, INFER, TRAIN)
        (bundle / "configs" / "train.json").write_text("{not json")
        with self.assertRaisesRegex(ValueError, "train.json"):
            mlc.check_bundle_config(bundle)
        with self.assertRaises(FileNotFoundError):
            mlc.prepare_studies(self.tmp / "nope.json", self.tmp / "studies")
        (self.tmp / "dl.json").write_text(json.dumps({"training": [{"image": "a/", "label": "b/"}]}))
        with self.assertRaisesRegex(ValueError, "NIfTI"):
            mlc.prepare_studies(self.tmp / "dl.json", self.tmp / "studies")

    def test_prepare_studies_layout(self):
        src = self.tmp / "sim"
        (src / "nifti").mkdir(parents=True)
        entries = []
        for i in range(2):
            for kind in ("low", "full"):
                arr = np.full((4, 4, 2), 10 * i + (kind == "full"), np.float32)
                nib.save(nib.Nifti1Image(arr, np.eye(4)), src / "nifti" / f"s{i}_{kind}.nii.gz")
            entries.append({"image": f"nifti/s{i}_low.nii.gz", "label": f"nifti/s{i}_full.nii.gz", "subject": f"s{i}"})
        (src / "datalist.json").write_text(json.dumps({"training": entries[:1], "validation": entries[1:]}))
        images = mlc.prepare_studies(src / "datalist.json", self.tmp / "studies")
        self.assertEqual([Path(p).name for p in images], ["s0.nii.gz", "s1.nii.gz"])
        for i, p in enumerate(images):
            label = self.tmp / "studies" / "labels" / "final" / Path(p).name
            self.assertEqual(float(nib.load(p).get_fdata().max()), 10 * i)
            self.assertEqual(float(nib.load(label).get_fdata().max()), 10 * i + 1)

    def test_static_only_cli(self):
        bundle = _write_bundle(self.tmp / "ok", META, INFER, TRAIN)
        self.assertEqual(mlc.main(["--static-only", "--bundles", str(bundle)]), 0)
        bad = _write_bundle(self.tmp / "bad", META, _drop(INFER, "inferer"), TRAIN)
        self.assertEqual(mlc.main(["--static-only", "--bundles", str(bad)]), 1)


if __name__ == "__main__":
    unittest.main()
