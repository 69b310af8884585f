# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from parameterized import parameterized

from rat_monai.cli import main
from rat_monai.data import PairedSliceDataset, build_datalist, load_datalist
from rat_monai.data.datalist import split_counts
from rat_monai.simulation import simulate_dataset


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _make(root: Path, nifti=(), dicom=()) -> None:
    for s in nifti:
        _touch(root / "nifti" / f"{s}_low.nii.gz")
        _touch(root / "nifti" / f"{s}_full.nii.gz")
    for s in dicom:
        _touch(root / "dicom" / s / "low" / "0001.dcm")
        _touch(root / "dicom" / s / "full" / "0001.dcm")


# (nifti subjects, dicom subjects, expected keys of every entry)
CASES = [
    (("a", "b", "c"), (), {"image", "label", "subject", "patient"}),
    ((), ("a", "b", "c"), {"image", "label", "image_dicom", "label_dicom", "subject", "patient"}),
    (("a", "b", "c", "d"), ("a", "b", "c", "d"),
     {"image", "label", "image_dicom", "label_dicom", "subject", "patient"}),
]


@parameterized.expand(CASES)
def test_build_and_load(nifti, dicom, keys):
    with tempfile.TemporaryDirectory() as td:
        root = Path(td) / "scans"
        _make(root, nifti, dicom)
        out = Path(td) / "lists" / "dl.json"
        dl = build_datalist(root, out=out, seed=0)
        entries = dl["training"] + dl["validation"] + dl["test"]
        assert sorted(e["subject"] for e in entries) == sorted(set(nifti) | set(dicom))
        assert len(dl["validation"]) == 1 and len(dl["test"]) >= 0 and len(dl["training"]) >= 1
        for e in entries:
            assert set(e) == keys
            if nifti:
                assert e["image"].endswith(f"{e['subject']}_low.nii.gz") and e["label"].endswith("_full.nii.gz")
            else:
                assert e["image"] == e["image_dicom"] and e["image"].endswith(f"{e['subject']}/low")
            assert e["image"].startswith("../scans/")  # relative to the datalist's folder
        for key in ("training", "validation", "test"):
            for e in load_datalist(out, key):
                assert Path(e["image"]).exists() and Path(e["label"]).exists()
                if "image_dicom" in e:
                    assert Path(e["image_dicom"]).is_dir()
        # same seed, same split
        again = build_datalist(root, out=out, seed=0)
        assert again == dl


def test_sidecar_units_unpaired_and_duplicates(tmp_path):
    root = tmp_path / "scans"
    _make(root, nifti=("p1", "p2"))
    _touch(root / "nifti" / "p1_low.json", json.dumps({"modality": "PT", "units": "suv", "other": 1}))
    _touch(root / "nifti" / "lonely_low.nii.gz")  # no partner: skipped with a warning
    _touch(root / "dicom" / "p3" / "low" / "1.dcm")  # DICOM low without full: skipped
    dl = build_datalist(root)
    entries = {e["subject"]: e for e in dl["training"] + dl["validation"] + dl["test"]}
    assert set(entries) == {"p1", "p2"}
    assert entries["p1"]["units"] == "suv" and entries["p1"]["modality"] == "PT" and "other" not in entries["p1"]
    assert entries["p1"]["image"] == "nifti/p1_low.nii.gz"  # relative to the folder when out is None
    _touch(root / "more" / "p1_low.nii.gz")
    _touch(root / "more" / "p1_full.nii.gz")
    with pytest.raises(ValueError, match="p1.*twice"):
        build_datalist(root)


def test_simulator_folder_round_trip(tmp_path):
    sim = simulate_dataset(tmp_path / "sim", "ct", subjects=3, seed=0, shape=(16, 16, 2), progress=False,
                           preview=False)
    dl = build_datalist(sim.parent)
    e = (dl["training"] + dl["validation"] + dl["test"])[0]
    assert e["units"] == "hu" and e["image_dicom"].startswith("dicom/") and e["image"].startswith("nifti/")
    assert len(dl["training"]) == 1 and len(dl["validation"]) == 1 and len(dl["test"]) == 1


def test_cli(tmp_path, capsys):
    root = tmp_path / "scans"
    _make(root, nifti=("a", "b", "c", "d", "e"))
    assert main(["datalist", str(root)]) == 0
    dl = json.loads((root / "datalist.json").read_text())
    assert sum(len(dl[k]) for k in ("training", "validation", "test")) == 5
    assert main(["datalist", str(root)]) == 1  # exists
    assert "overwrite" in capsys.readouterr().err
    out = tmp_path / "x" / "list.json"
    assert main(["datalist", str(root), "--out", str(out), "--split", "0.6", "0.4", "0", "--seed", "3"]) == 0
    dl = json.loads(out.read_text())
    assert (len(dl["training"]), len(dl["validation"]), len(dl["test"])) == (3, 2, 0)


def test_ill_arg(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_datalist(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no paired scans"):
        build_datalist(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="rat-monai"):
        load_datalist(tmp_path / "none.json")
    bad = _touch(tmp_path / "bad.json", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_datalist(bad)
    ok = _touch(tmp_path / "ok.json", json.dumps({"training": []}))
    with pytest.raises(ValueError, match="'validation'"):
        load_datalist(ok, "validation")


def _patients(dl: dict) -> dict[str, set[str]]:
    return {k: {e["patient"] for e in dl[k]} for k in ("training", "validation", "test")}


def test_merge_folders_split_by_patient(tmp_path):
    """Two folders whose subjects share patients (sidecar "patient") merge; no patient is in two lists."""
    a, b = tmp_path / "phantoms", tmp_path / "real"
    _make(a, nifti=[f"s{i}" for i in range(6)])
    _make(b, nifti=[f"s{i}" for i in range(6)])  # same subject names in both folders
    for root in (a, b):
        for i in range(6):  # patient P0..P2 has two scans in each folder
            side = {"modality": "CT", "units": "hu", "patient": f"P{i // 2}"}
            _touch(root / "nifti" / f"s{i}_low.json", json.dumps(side))
    out = tmp_path / "merged.json"
    assert main(["datalist", str(a), str(b), "--out", str(out), "--split", "0.34", "0.33", "0.33"]) == 0
    dl = json.loads(out.read_text())
    entries = dl["training"] + dl["validation"] + dl["test"]
    assert len(entries) == 12 and len({e["subject"] for e in entries}) == 12  # names made unique per folder
    assert {e["subject"] for e in entries} >= {"phantoms-s0", "real-s0"}
    pats = _patients(dl)
    assert all(pats[x] for x in pats)  # three patients: one per list
    assert not (pats["training"] & pats["validation"] or pats["training"] & pats["test"]
                or pats["validation"] & pats["test"])
    for e in entries:  # every scan of a patient is in the list of that patient
        assert e["image"].startswith(("phantoms/", "real/")) and e["units"] == "hu"
    # several folders need --out; mixed modalities are refused
    assert main(["datalist", str(a), str(b)]) == 1
    _touch(b / "nifti" / "s0_low.json", json.dumps({"modality": "PT", "patient": "P0"}))
    with pytest.raises(ValueError, match="mix modalities"):
        build_datalist([a, b])


def test_merged_simulated_folders_train_format(tmp_path):
    """A merged datalist of two simulated folders is what the bundles' train.json consumes: ``load_datalist`` +
    ``PairedSliceDataset`` (the ids train#dataset / validate#dataset), with a patient-level split."""
    for seed in (0, 1):
        simulate_dataset(tmp_path / f"sim{seed}", "ct", subjects=3, seed=seed, shape=(16, 16, 2), progress=False,
                         preview=False, formats=("nifti",))
    out = tmp_path / "merged.json"
    dl = build_datalist([tmp_path / "sim0", tmp_path / "sim1"], out=out, seed=0)
    pats = _patients(dl)
    assert sum(len(p) for p in pats.values()) == 6 and len(set().union(*pats.values())) == 6
    bundles = Path(__file__).resolve().parents[2] / "bundles"
    for name in ("rat_ct", "rat_pet"):  # each bundle's own expression for its training / validation data
        parser = ConfigParser()
        parser.read_config(str(bundles / name / "configs" / "train.json"))
        parser["datalist"] = str(out)
        for key, part in (("train", "training"), ("validate", "validation")):
            items = parser.get_parsed_content(f"{key}#dataset#data")
            assert [Path(e["image"]).name for e in items] == [Path(e["image"]).name for e in dl[part]]
            assert all(Path(e["image"]).is_file() and Path(e["label"]).is_file() for e in items)
    data = load_datalist(out, "training")
    ds = PairedSliceDataset(data, modality="ct", cache_rate=0.0, progress=False)
    item = ds[0]
    assert tuple(item["image"].shape) == (1, 16, 16) and item["image"].meta["units"] == "hu"


# (n, split, expected (training, validation, test))
SPLIT_CASES = [
    (1, (0.7, 0.15, 0.15), (1, 0, 0)),
    (2, (0.7, 0.15, 0.15), (1, 1, 0)),
    (3, (0.7, 0.15, 0.15), (1, 1, 1)),
    (10, (0.7, 0.15, 0.15), (6, 2, 2)),
    (9, (0.7, 0.15, 0.15), (7, 1, 1)),
    (20, (0.8, 0.1, 0.1), (16, 2, 2)),
    (5, (1.0, 0.0, 0.0), (5, 0, 0)),
]


@parameterized.expand(SPLIT_CASES)
def test_split_counts(n, split, expected):
    assert split_counts(n, split) == expected
