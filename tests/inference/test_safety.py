# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Issue 15: nothing silently wrong. Each test builds its input from a few slices of the real scans in ``../shared``
(copied to tmp_path, tags edited where the case needs it) and checks the refusal, its message, the override and
what ``report.json`` records."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from rat_monai.cli import main
from rat_monai.data import load_volume
from rat_monai.inference import ScanRestorer
from rat_monai.inference.config_values import Plain
from tests.inference.test_cli import TINY  # the tiny untrained network the CLI tests use

pytestmark = pytest.mark.filterwarnings("ignore::rat_monai.data.SliceSpacingWarning")

REPO = Path(__file__).resolve().parents[2]
class Identity(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x[:, :1]


def _sorted(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.dcm"))
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    return [files[i] for i in np.argsort(z)]


def _copy(src: Path, dst: Path, start: int, count: int, edit=None) -> Path:
    dst.mkdir(parents=True)
    for f in _sorted(src)[start : start + count]:
        ds = pydicom.dcmread(f)
        if edit is not None:
            edit(ds)
        ds.save_as(dst / f.name)
    return dst


def _restorer(modality: str, **kwargs) -> ScanRestorer:
    return ScanRestorer(Identity(), modality, use_regions=False, allow_untrained=True, progress=False, **kwargs)


# ---------------------------------------------------------------- item 1: modality
def _as_mr(ds: pydicom.Dataset) -> None:
    ds.Modality = "MR"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage


def test_mr_series_refused_by_ct_and_pet_bundles(real_ct_dir, tmp_path, capsys):
    mr = _copy(real_ct_dir, tmp_path / "mr", 20, 2, _as_mr)
    for bundle in ("rat_ct", "rat_pet"):
        code = main(["infer", "--bundle", str(REPO / "bundles" / bundle), "--input", str(mr), "--output",
                     str(tmp_path / f"out_{bundle}"), *TINY])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 1 and "is a MR scan" in err and "--allow modality" in err and "Traceback" not in err, err
        assert not (tmp_path / f"out_{bundle}").exists()
    # insisting: restored, and the report says the check was overridden
    report = _restorer("ct", allow=["modality"]).run(mr, tmp_path / "forced", format="nifti")
    assert report["safety"]["modality"] == {"expected": "CT", "found": "MR", "status": "overridden"}
    assert report["settings"]["allow"] == ["modality"]


def test_bundle_modality_from_metadata(tmp_path):
    # the PET bundle (metadata.json: PT) told to restore CT is refused, naming the metadata and the override
    with pytest.raises(ValueError, match=r"trained on \(PT in configs/metadata.json\)|PT in configs/metadata.json"):
        ScanRestorer.from_bundle(REPO / "bundles" / "rat_pet", allow_untrained=True, modality="ct")


# ---------------------------------------------------------------- item 2: radionuclide / SPECT stored as PET
def _lu177_spect(ds: pydicom.Dataset) -> None:
    rp = ds.RadiopharmaceuticalInformationSequence[0]
    rp.RadionuclideHalfLife = "574300"  # Lu-177: 6.647 days
    rp.Radiopharmaceutical = "Lu-177 PSMA"
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-145A8", "SRT", "^177^Lutetium"
    rp.RadionuclideCodeSequence = pydicom.Sequence([code])
    ds.Manufacturer, ds.ManufacturerModelName = "SIEMENS NM", "Symbia Intevo Bold"


def test_spect_stored_as_pet_is_refused(real_pet_dir, tmp_path):
    spect = _copy(real_pet_dir, tmp_path / "spect", 140, 3, _lu177_spect)
    with pytest.raises(ValueError, match=r"not an F-18 PET .*half-life 574300 s.*check 'radionuclide'.*--allow radio"):
        _restorer("pet").run(spect, tmp_path / "o1")
    with pytest.raises(ValueError, match=r"SPECT/NM camera .*Symbia Intevo.*check 'acquisition'"):
        _restorer("pet", allow=["radionuclide"]).run(spect, tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    report = _restorer("pet", allow=["radionuclide", "acquisition"]).run(spect, tmp_path / "o3", format="nifti")
    safety = json.loads((tmp_path / "o3" / "report.json").read_text())["safety"]
    assert safety == report["safety"]
    assert safety["radionuclide"]["status"] == safety["acquisition"]["status"] == "overridden"
    assert "^177^Lutetium" in safety["radionuclide"]["found"]


def test_real_f18_pet_passes(real_pet_dir, tmp_path):
    pet = _copy(real_pet_dir, tmp_path / "pet", 140, 3)
    safety = _restorer("pet").run(pet, tmp_path / "out", format="nifti")["safety"]
    assert safety["radionuclide"]["status"] == "ok" and "6588" in safety["radionuclide"]["found"]
    assert safety["acquisition"]["status"] == "ok" and safety["modality"]["status"] == "ok"
    assert safety["units"] == {"expected": "suv", "found": "suv", "declared_by": None, "status": "ok"}


# ---------------------------------------------------------------- item 3: units of NIfTI files
def test_restored_pet_nifti_round_trip_and_bqml_refused(real_pet_dir, tmp_path):
    pet = _copy(real_pet_dir, tmp_path / "pet", 140, 3)
    report = _restorer("pet").run(pet, tmp_path / "out", format="nifti")
    restored = tmp_path / "out" / "restored.nii.gz"
    assert report["units_out"] == "bqml"
    side = json.loads((tmp_path / "out" / "restored.json").read_text())
    assert side["modality"] == "PT" and side["units"] == "bqml" and side["suv_factor"] == report["suv_factor"]
    assert nib.load(restored).header["descrip"].item().startswith(b"PT BQML")
    # read back: the declaration is used, so the Bq/ml file comes back in SUV (not 1/SUV-factor times too large)
    back = load_volume(restored)
    source = load_volume(pet)
    assert back.meta["units"] == "suv" and back.meta["modality"] == "PT"
    np.testing.assert_allclose(back[0].numpy(), source[0].numpy(), rtol=1e-4, atol=1e-5)  # identity network
    # ... and the restorer takes it back as SUV too
    assert _restorer("pet").run(restored, tmp_path / "again", format="nifti")["safety"]["units"]["status"] == "ok"
    # the same Bq/ml values without any declaration are refused as "SUV"
    plain = tmp_path / "plain.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(nib.load(restored).dataobj), nib.load(restored).affine), str(plain))
    with pytest.raises(ValueError, match=r"body median .*check 'suv-body-median'.*check_units=False.*--allow units"):
        _restorer("pet").run(plain, tmp_path / "o2")
    assert load_volume(plain, modality="pet", check_units=False).meta["units"] is None


def test_8bit_ct_nifti_refused(real_ct_dir, tmp_path):
    ct = load_volume(_copy(real_ct_dir, tmp_path / "ct", 20, 2))[0].numpy()
    display = np.clip((ct + 160) / 400 * 255, 0, 255).round().astype(np.float32)  # a soft-tissue window, 8 bit
    path = tmp_path / "display.nii.gz"
    nib.save(nib.Nifti1Image(display, np.eye(4)), str(path))
    with pytest.raises(ValueError, match=r"0\.\.255.*check 'hu-not-8bit'"):
        load_volume(path, modality="ct")
    with pytest.raises(ValueError, match="hu-not-8bit"):
        _restorer("ct").run(path, tmp_path / "o1")
    report = _restorer("ct", allow=["units"]).run(path, tmp_path / "o2", format="nifti")
    assert report["settings"]["allow"] == ["units"]
    no_air = tmp_path / "no_air.nii.gz"  # HU values cropped inside the body: no air
    nib.save(nib.Nifti1Image(ct[200:240, 200:240], np.eye(4)), str(no_air))
    with pytest.raises(ValueError, match="check 'hu-has-air'"):
        load_volume(no_air, units="hu")
    assert load_volume(no_air, units="hu", check_units=False).meta["units"] == "hu"


# ---------------------------------------------------------------- item 4: user values are never code
def test_user_values_are_not_evaluated(real_pet_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pet = _copy(real_pet_dir, tmp_path / "pet", 140, 2)
    code = "$__import__('pathlib').Path('PWNED').touch()"
    for option in (["--checkpoint", code], ["--sam-checkpoint", code], ["--override", f"series_uid={code}"]):
        main(["infer", "--bundle", str(REPO / "bundles" / "rat_pet"), "--input", str(pet), "--output", "o", *TINY,
              *option])  # fmt: skip
        capsys.readouterr()
        assert not (tmp_path / "PWNED").exists(), option
    with pytest.raises(FileNotFoundError, match="checkpoint not found: @width"):  # a reference stays text
        ScanRestorer.from_bundle(REPO / "bundles" / "rat_pet", checkpoint="@width")
    restorer = ScanRestorer.from_bundle(REPO / "bundles" / "rat_pet", untrained=True, device="cpu",
                                        series_uid=Plain("%width"), width=8)  # fmt: skip
    assert restorer.series_uid == "%width"


# ---------------------------------------------------------------- item 8: options vs overrides, checks before work
def test_override_collisions_unknown_keys_and_early_path_checks(real_pet_dir, tmp_path, capsys):
    pet = _copy(real_pet_dir, tmp_path / "pet", 140, 2)
    args = ["infer", "--bundle", str(REPO / "bundles" / "rat_pet"), "--input", str(pet), *TINY]
    assert main([*args, "--output", str(tmp_path / "o1"), "--override", "batch_size=4"]) == 0
    assert json.loads((tmp_path / "o1" / "report.json").read_text())["settings"]["batch_size"] == 4
    capsys.readouterr()
    assert main([*args, "--output", str(tmp_path / "o2"), "--override", "batch_size=4", "--batch-size", "3"]) == 1
    assert "--batch-size and --override batch_size" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "o3"), "--override", "widht=8"]) == 1
    err = capsys.readouterr().err
    assert "unknown override 'widht'" in err and "width" in err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main([*args, "--output", str(tmp_path / "o4"), "--cache-dir", str(blocker / "cache")]) == 1
    err = capsys.readouterr().err
    assert "region cache folder" in err and "is a file" in err and "Traceback" not in err
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main([*args, "--output", str(tmp_path / "o5"), "--cache-dir", str(locked / "c")]) == 1
        assert "cannot be written" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("o2", "o3", "o4", "o5", "o4.regions_cache"))
    assert main([*args, "--output", str(tmp_path / "o6"), "--override", 'network_def={"_target_": "os.getcwd"}']) == 1
    assert "not config components" in capsys.readouterr().err


# ---------------------------------------------------------------- item 10: tilt / gaps from the command line
def test_tilted_series_allow_tilt_on_the_command_line(real_ct_dir, tmp_path, capsys):
    def tilt(ds: pydicom.Dataset) -> None:  # a 15-degree-like shear: y moves with z
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.27 * z, z]

    tilted = _copy(real_ct_dir, tmp_path / "tilted", 20, 3, tilt)
    with pytest.raises(ValueError, match=r"allow_tilt=True \(rat-monai infer/regions: --allow tilt\)"):
        load_volume(tilted)
    assert main(["regions", str(tilted), "--out", str(tmp_path / "png"), "--method", "intensity"]) == 1
    assert "--allow tilt" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="allow_tilt=True"):
        code = main(["regions", str(tilted), "--out", str(tmp_path / "png"), "--method", "intensity", "--allow",
                     "tilt", "--num-slices", "1"])  # fmt: skip
    assert code == 0 and list((tmp_path / "png").glob("*.png"))
    report = _restorer("ct", allow=["tilt"]).run(tilted, tmp_path / "out", format="nifti")
    assert report["num_slices"] == 3
