# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""MONAI Model Zoo acceptance rules (issue 6), checked locally for both bundles.

Walks the zoo's CI and contributing-guide rules that can be checked without the zoo itself: required files and their
exact names, weights (``models/model.pt`` or ``large_files.yml``), committed file sizes, no absolute paths, JSON style,
metadata against the schema, version/changelog, plain version pins that exist on PyPI for Python 3.10, declared
third-party imports, ``network_data_format``, MONAI's workflow properties, ``verify_net_in_out`` and ``ckpt_export``
(TorchScript output == eager output).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata, verify_net_in_out
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from rat_monai.data import load_volume, normalize_units
from rat_monai.regions import get_partitioner

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["rat_pet", "rat_ct"]
SCHEMA = REPO / "schemas" / "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"  # the hash MONAI's own tests expect for this schema
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
MAX_FILE_BYTES = 1_000_000  # the zoo refuses committed files over 1 MB (pre-commit check-added-large-files)
# ... except the weights: the zoo's limit for one file is 25 MB (its README, "Model storage"); a zoo pull request
# leaves them out and lists them in large_files.yml, this repository commits them (they ship with the bundle)
MAX_WEIGHTS_BYTES = 25 * 1024 * 1024
WEIGHT_FILES = ("models/model.pt", "models/model.ts")
REQUIRED_FILES = ["LICENSE", "configs/metadata.json", "configs/inference.json", "docs/README.md"]
REQUIRED_FILES += ["docs/data_license.txt"]  # the training data's terms
LARGE_FILES_NAMES = ["large_files.yml", "large_files.yaml", "large_files.json"]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
PLAIN_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
EXACT_VERSION = re.compile(r"^\d+(\.\d+)*$")  # an exact PyPI release: no specifier, no local "+cpu" part
IO_FIELDS = ["type", "format", "num_channels", "spatial_shape", "dtype", "value_range", "channel_def"]
ABSOLUTE = r"^(/|~|[A-Za-z]:[\\/])"  # POSIX root, home, or a Windows drive
TEXT_SUFFIXES = (".json", ".md", ".txt", ".conf", ".py", ".yml", ".yaml", "")
TINY_NET = {"width": 8, "network_def#middle_blocks": 1, "network_def#layers_per_block": 1}

# import name -> PyPI name of every third-party package the configs or rat_monai may import
IMPORT_TO_PYPI = {
    "PIL": "pillow",
    "SimpleITK": "SimpleITK",
    "fire": "fire",
    "ignite": "pytorch-ignite",
    "jsonschema": "jsonschema",
    "matplotlib": "matplotlib",
    "monai": "monai",
    "nibabel": "nibabel",
    "numpy": "numpy",
    "pydicom": "pydicom",
    "rat_monai": "rat-monai",
    "scipy": "scipy",
    "segment_anything": "segment-anything",
    "skimage": "scikit-image",
    "tensorboard": "tensorboard",
    "torch": "torch",
    "torchvision": "torchvision",
    "tqdm": "tqdm",
    "yaml": "pyyaml",
}
# optional extras of rat-monai that no bundle config reaches (imported only inside their own commands)
OPTIONAL_EXTRAS = {"bm3d": "rat-monai[eval]: the BM3D row of rat-monai evaluate"}
# packages needed at run time without an import statement naming them
RUNTIME_EXTRAS = {
    "torch.utils.tensorboard": ["tensorboard"],  # TensorBoardStatsHandler / SummaryWriter
    "pydicom": ["pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"],  # compressed DICOM pixel data (plugins)
}
# Some pins are older than what installs here on purpose: numpy, scipy, scikit-image, pillow and matplotlib's newest
# releases have no Python 3.10 wheels (the zoo installs on 3.10), so metadata pins the newest release that has them
# (test_pins_exist_for_python_310 checks that they exist). Every pin must satisfy rat-monai's own requirement, which
# is exact for the pairs that must match (torch, torchvision, monai, pytorch-ignite, segment-anything).
# rat-monai is not published on PyPI (installed from the repository), so its pin cannot be resolved there
NOT_ON_PYPI = {"rat-monai"}
REGISTRY_DOWN = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                 "Network is unreachable", "Could not fetch URL", "ConnectTimeout", "ReadTimeout")  # fmt: skip


def _root(bundle: str) -> Path:
    return REPO / "bundles" / bundle


def _tracked(bundle: str) -> list[str]:
    """The bundle's git-tracked files (what a zoo submission would copy), repository-relative."""
    out = subprocess.run(
        ["git", "ls-files", "-z", f"bundles/{bundle}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [t for t in out.split("\0") if t]


def _configs(bundle: str) -> list[Path]:
    return sorted((_root(bundle) / "configs").glob("*.json"))


def _meta(bundle: str) -> dict:
    return json.loads((_root(bundle) / "configs" / "metadata.json").read_text())


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _absolute_paths(s: str) -> list[str]:
    """Absolute or machine-specific paths in a config string, including string literals inside ``$`` expressions
    (a literal appended to another path, ``@output_dir + '/test'``, is relative)."""
    found = [s] if re.match(ABSOLUTE, s) or re.search(r"(^|\s)(/(home|work|Users|root|tmp)/|~/)", s) else []
    for match in re.finditer(r"['\"]([^'\"]*)['\"]", s):
        appended = s[: match.start()].rstrip().endswith("+")
        if not appended and re.match(ABSOLUTE, match.group(1)):
            found.append(match.group(1))
    return found


def _declared(meta: dict) -> dict[str, str]:
    """PyPI name (lower case) -> pinned version, from every version field of a metadata.json."""
    pins = {"monai": meta["monai_version"], "torch": meta["pytorch_version"], "numpy": meta["numpy_version"]}
    pins.update(meta.get("required_packages_version", {}))
    return {k.lower(): v for k, v in pins.items()}


def _config_modules(bundle: str) -> set[str]:
    """Dotted module names the bundle's configs import: ``$import``/``$from`` expressions and dotted ``_target_``."""
    mods: set[str] = set()
    for path in _configs(bundle):
        for s in _strings(json.loads(path.read_text())):
            if s.startswith("$"):
                try:  # "@id" references become a plain name so the expression parses as Python
                    tree = ast.parse(re.sub(r"@[\w#]+", "_ref", s[1:]))
                except SyntaxError:
                    continue
                mods |= _imports_of(tree)
                # packages used by name without an import ("$monai.utils.set_determinism(...)")
                mods |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in IMPORT_TO_PYPI}
        for target in re.findall(r'"_target_": "([^"]+)"', path.read_text()):
            if "." in target:  # bare names are MONAI components looked up by ComponentLocator
                mods.add(target.rsplit(".", 1)[0])
    return mods


def _imports_of(tree: ast.AST) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "optional_import",
            "import_module",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                mods.add(node.args[0].value)
    return mods


def _package_modules() -> set[str]:
    """Every module rat_monai imports anywhere (module level or lazily inside functions)."""
    mods: set[str] = set()
    for path in sorted((REPO / "rat_monai").rglob("*.py")):
        mods |= _imports_of(ast.parse(path.read_text(), filename=str(path)))
    return mods


def _required_pypi(mods: set[str]) -> dict[str, str]:
    """PyPI name -> the import that needs it; fails on a third-party import root missing from IMPORT_TO_PYPI."""
    need: dict[str, str] = {}
    for mod in sorted(mods):
        root = mod.split(".")[0]
        if root in sys.stdlib_module_names or root == "__future__" or root in OPTIONAL_EXTRAS:
            continue
        assert root in IMPORT_TO_PYPI, f"import {mod!r}: unknown third-party package; map {root!r} in IMPORT_TO_PYPI"
        need.setdefault(IMPORT_TO_PYPI[root], mod)
        for prefix, extras in RUNTIME_EXTRAS.items():
            if mod == prefix or mod.startswith(prefix + "."):
                for extra in extras:
                    need.setdefault(extra, f"{mod} (runtime)")
    return need


@pytest.mark.parametrize("bundle", BUNDLES)
def test_required_files(bundle):
    root = _root(bundle)
    for rel in REQUIRED_FILES:
        assert (root / rel).is_file(), f"{bundle}: the Model Zoo requires {rel}"
    # exactly "LICENSE": no LICENSE.txt / LICENSE.md / License next to it
    assert sorted(p.name for p in root.iterdir() if p.name.lower().startswith("licen")) == ["LICENSE"]
    assert "Apache License" in (root / "LICENSE").read_text()
    data_license = (root / "docs" / "data_license.txt").read_text()
    for term in ("Apache License 2.0", "CC BY", "rights", "TCIA"):
        assert term in data_license, f"{bundle}/docs/data_license.txt does not cover {term!r}"
    # large-file declarations only under one of the names the zoo reads
    for path in root.rglob("*"):
        if path.is_file() and path.stem.lower().replace("-", "_") == "large_files":
            assert path.name in LARGE_FILES_NAMES and path.parent == root, f"{path}: must be <bundle>/large_files.yml"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_weights_present_or_declared(bundle, shipped_weights):
    """The zoo's weights rule: ``models/model.pt`` in the bundle (here: committed, under the 25 MB limit for one file)
    or declared in ``large_files.yml`` with a real URL and hash. Required for rat_pet; for rat_ct once committed."""
    root = _root(bundle)
    declared = [root / n for n in LARGE_FILES_NAMES if (root / n).is_file()]
    if declared:
        import yaml

        entries = yaml.safe_load(declared[0].read_text())["large_files"]
        for entry in entries:
            assert set(entry) >= {"path", "url", "hash_val", "hash_type"}, entry
            assert entry["url"].startswith("https://"), entry
            assert entry["hash_type"] in ("md5", "sha256"), entry
            assert re.fullmatch(r"[0-9a-f]{32}|[0-9a-f]{64}", entry["hash_val"]), entry
        assert "models/model.pt" in [e["path"] for e in entries]
    readme, meta = (root / "docs" / "README.md").read_text(), _meta(bundle)
    if (root / "models" / "model.pt").is_file():  # the docs describe the shipped weights, not their absence
        assert "No trained weights are published" not in readme
        assert "no weights are distributed" not in meta["intended_use"].lower()
    weights = shipped_weights(bundle)  # skips only a bundle whose weights are not committed yet (never under CI)
    rel = weights.relative_to(REPO).as_posix()
    assert rel in _tracked(bundle), f"{rel} exists but is not committed: a clone (and a zoo submission) lacks it"
    assert weights.stat().st_size <= MAX_WEIGHTS_BYTES, f"{rel}: {weights.stat().st_size} bytes, over 25 MB"
    assert "models/model.pt" in readme


@pytest.mark.parametrize("bundle", BUNDLES)
def test_committed_file_sizes(bundle):
    tracked = _tracked(bundle)
    assert "bundles/" + bundle + "/configs/metadata.json" in tracked
    for rel in tracked:
        path = REPO / rel
        if path.is_file():
            limit = MAX_WEIGHTS_BYTES if rel.split("/", 2)[2] in WEIGHT_FILES else MAX_FILE_BYTES
            assert path.stat().st_size <= limit, f"{rel}: {path.stat().st_size} bytes, over {limit} bytes"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/data/scan.nii.gz", 1),
        ("~/models/model.pt", 1),
        ("C:\\data\\x", 1),
        ("D:/data", 1),
        ("$@bundle_root + '/models/model.pt'", 0),
        ("$os.path.join('/opt/x', 'y')", 1),
        ("data/work/x", 0),
        ("relative/home/x", 0),
        ("see /home/user/x", 1),
        ("models/model.pt", 0),
    ],
)
def test_absolute_path_rule(value, expected):
    assert len(_absolute_paths(value)) == expected, _absolute_paths(value)


def test_ill_arg():
    # an import the map does not know is an error naming the package, not a silent pass
    with pytest.raises(AssertionError, match="foo"):
        _required_pypi({"foo.bar"})
    assert _required_pypi({"os.path", "skimage.filters", "torch.utils.tensorboard"}) == {
        "scikit-image": "skimage.filters",
        "torch": "torch.utils.tensorboard",
        "tensorboard": "torch.utils.tensorboard (runtime)",
    }


@pytest.mark.parametrize("bundle", BUNDLES)
def test_json_style_and_paths(bundle):
    for path in _configs(bundle):
        text = path.read_text()
        data = json.loads(text)  # json keeps the authoring order of keys
        assert text == json.dumps(data, indent=4, ensure_ascii=False) + "\n", f"{path}: not indent-4 JSON + newline"
        assert not re.search(r"[ \t]+$", text, flags=re.M), f"{path}: trailing whitespace"
        for s in _strings(data):
            assert not _absolute_paths(s), f"{path}: absolute or machine-specific path in {s!r}"
    # the zoo runs flake8/black/isort on bundle Python; these bundles keep all code in rat_monai (add those checks
    # here if a bundle ever ships scripts/)
    assert not [rel for rel in _tracked(bundle) if rel.endswith(".py")], f"{bundle}: Python files inside the bundle"
    for rel in _tracked(bundle):  # what would be submitted
        path = REPO / rel
        if path.is_file() and path.stat().st_size and path.suffix in TEXT_SUFFIXES:
            text = path.read_text()
            assert text.endswith("\n") and not text.endswith("\n\n"), f"{path}: must end with exactly one newline"
            assert not re.search(r"[ \t]+$", text, flags=re.M), f"{path}: trailing whitespace"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_schema_and_versions(bundle, meta_schema_path):
    meta_file = _root(bundle) / "configs" / "metadata.json"
    for schema in (meta_schema_path, SCHEMA):  # the shared copy and the repository's copy; raises on failure
        verify_metadata(meta_file=str(meta_file), filepath=str(schema), hash_val=SCHEMA_MD5)
    meta = _meta(bundle)
    requirements = {
        canonicalize_name(r.name): r.specifier
        for r in map(Requirement, importlib_metadata.requires("rat-monai") or [])
        if r.marker is None
    }
    assert meta["schema"] == SCHEMA_URL
    assert meta.get("name"), f"{bundle}: metadata needs a name"
    assert SEMVER.match(meta["version"]), f"version {meta['version']!r} is not semver"
    assert meta["version"] in meta["changelog"], "the current version must be listed in the changelog"
    assert all(SEMVER.match(v) for v in meta["changelog"]), "every changelog key must be semver"
    assert PLAIN_VERSION.match(meta["monai_version"]), f"monai_version {meta['monai_version']!r} is not plain X.Y.Z"
    for name, version in _declared(meta).items():
        assert EXACT_VERSION.match(version), f"{name}: {version!r} is not an exact PyPI version (no '+local', no '>=')"
        if name in NOT_ON_PYPI:
            continue
        spec = requirements.get(canonicalize_name(name))
        if spec is not None:
            assert spec.contains(Version(version), prereleases=True), f"{name}: {version} outside rat-monai's {spec}"
        else:  # not a direct rat-monai requirement (e.g. torchvision's deps): pin what is installed
            assert version == importlib_metadata.version(name).split("+")[0], f"{name}: pin {version} != installed"
    assert meta["required_packages_version"]["rat-monai"] == importlib_metadata.version("rat-monai")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_network_data_format(bundle):
    fmt = _meta(bundle)["network_data_format"]
    assert list(fmt) == ["inputs", "outputs"]
    assert list(fmt["inputs"]) == ["image"] and list(fmt["outputs"]) == ["pred"]
    for item in (fmt["inputs"]["image"], fmt["outputs"]["pred"]):
        for field in IO_FIELDS:
            assert field in item, f"{bundle}: network_data_format lacks {field!r}"
        assert sorted(item["channel_def"], key=int) == [str(i) for i in range(item["num_channels"])]
        assert item["dtype"] == "float32" and len(item["value_range"]) == 2
    image = fmt["inputs"]["image"]
    last = image["channel_def"][str(image["num_channels"] - 1)]
    assert "region" in last, "the region map rides as the LAST input channel"
    assert fmt["outputs"]["pred"]["num_channels"] == image["num_channels"] - 1


@pytest.mark.parametrize("bundle", BUNDLES)
def test_declared_imports(bundle):
    meta = _meta(bundle)
    declared = _declared(meta)
    config_mods, package_mods = _config_modules(bundle), _package_modules()
    assert "rat_monai" in {m.split(".")[0] for m in config_mods}  # the scan sees the configs' imports
    assert "torch.utils.tensorboard" in package_mods  # ... and the package's lazy ones
    for name, why in _required_pypi(config_mods | package_mods).items():
        assert name.lower() in declared, f"{bundle}: {name} (needed by {why}) is not declared in metadata.json"


def _workflow(bundle: str, config: str, workflow_type: str, **overrides) -> ConfigWorkflow:
    configs = _root(bundle) / "configs"
    return ConfigWorkflow(
        config_file=str(configs / f"{config}.json"),
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )


@pytest.mark.parametrize("bundle", BUNDLES)
def test_train_properties(bundle, tiny_datasets, tiny_overrides, tmp_path):
    raw = json.loads((_root(bundle) / "configs" / "train.json").read_text())
    for key in ("bundle_root", "device", "dataset_dir", "val_interval", "run", "training"):
        assert key in raw, f"{bundle}/train.json lacks {key!r}"
    assert "max_epochs" in raw["train"]["trainer"] or "max_iterations" in raw["train"]["trainer"]
    for section, keys in {"train": ("trainer", "handlers", "inferer"), "validate": ("evaluator", "handlers")}.items():
        for key in keys:
            assert key in raw[section], f"{bundle}/train.json lacks {section}#{key}"
        assert "data" in raw[section]["dataset"], f"{bundle}/train.json lacks {section}#dataset#data"
    modality = bundle.split("_")[1]
    workflow = _workflow(
        bundle, "train", "train", **tiny_overrides, bundle_root=str(tmp_path), dataset_dir=tiny_datasets[modality]
    )
    workflow.initialize()
    assert workflow.check_properties() == []  # MONAI resolves every required (and referenced optional) property
    assert workflow.max_epochs >= 1 and len(workflow.train_dataset_data) > 0 and len(workflow.val_dataset_data) > 0


def _tiny_scan(path: Path, modality: str) -> Path:
    """A small NIfTI volume in real units (SUV for PET, HU for CT): a body with a hot/dense insert, plus noise."""
    rng = np.random.default_rng(0)
    body, insert, air = (1.5, 6.0, 0.0) if modality == "pet" else (40.0, 300.0, -1000.0)
    vol = np.full((40, 48, 3), air, np.float32)
    vol[8:32, 8:40] = body
    vol[14:20, 20:26] = insert
    vol += rng.standard_normal(vol.shape).astype(np.float32) * abs(insert - body) * 0.05
    nib.save(nib.Nifti1Image(vol, np.diag([4.0, 4.0, 3.0, 1.0])), str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_infer_properties(bundle, tmp_path):
    raw = json.loads((_root(bundle) / "configs" / "inference.json").read_text())
    for key in ("bundle_root", "device", "network_def", "inferer", "dataset_dir", "dataset", "evaluator", "output_dir"):
        assert key in raw, f"{bundle}/inference.json lacks {key!r}"
    for key in ("initialize", "run", "finalize"):
        assert key in raw, f"{bundle}/inference.json lacks the run id {key!r}"
    modality = bundle.split("_")[1]
    root = tmp_path / bundle
    parser = ConfigParser()
    parser.read_config(str(_root(bundle) / "configs" / "inference.json"))
    parser.update(TINY_NET)
    torch.manual_seed(0)
    (root / "models").mkdir(parents=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    scan = _tiny_scan(tmp_path / "scan.nii.gz", modality)
    common = dict(TINY_NET, bundle_root=str(root), input=str(scan), region_method="felzenszwalb", progress=False)
    workflow = _workflow(bundle, "inference", "infer", **common, output_dir=str(tmp_path / "zoo"))
    workflow.initialize()
    assert workflow.check_properties() == []  # MONAI resolves every required (and referenced optional) property
    # the zoo's evaluator path (dataset -> preprocessing -> SliceInferer -> postprocessing) restores the scan ...
    workflow.evaluator.run()
    zoo = nib.load(str(tmp_path / "zoo" / "scan_restored.nii.gz"))
    # ... exactly as the bundle's own run (ScanRestorer) does
    restorer = _workflow(bundle, "inference", "infer", **common, output_dir=str(tmp_path / "own"), format="nifti")
    restorer.initialize()
    restorer.run()
    own = nib.load(str(tmp_path / "own" / "restored.nii.gz"))
    assert zoo.shape == own.shape == nib.load(str(scan)).shape
    np.testing.assert_allclose(zoo.affine, own.affine)
    np.testing.assert_allclose(zoo.get_fdata(), own.get_fdata(), atol=1e-4, rtol=1e-5)
    # ... and declares its units in a sidecar, so the written NIfTI reads back in SUV / HU, not as guessed units
    side = json.loads((tmp_path / "zoo" / "scan_restored.json").read_text())
    assert (side["modality"], side["units"]) == (("PT", "suv") if modality == "pet" else ("CT", "hu"))
    back = load_volume(tmp_path / "zoo" / "scan_restored.nii.gz")
    assert back.meta["units"] == side["units"] and back.meta["units_declared_by"].endswith("scan_restored.json")


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("config", ["train", "inference"])
def test_verify_net_in_out(bundle, config):
    configs = _root(bundle) / "configs"
    # raises on a wrong channel count or dtype; the network takes ONE tensor (image + region channel)
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / f"{config}.json"),
        device="cpu",
        n=2,
        any=20,
        **TINY_NET,
    )


def _real_input(bundle: str, parser: ConfigParser, series: Path, crop: int) -> torch.Tensor:
    """One ``[1, 2, H, W]`` input as the bundle's restorer builds it from a real slice: the slice in real units (SUV
    or HU) normalised with the bundle's ``normalization``, and its region map from the bundle's ``region_method``
    (offline without a SAM checkpoint), on a central ``crop`` x ``crop`` window of the slice."""
    modality = bundle.split("_")[1]
    image = np.asarray(load_volume(series)[0], np.float32)[..., 0]  # [X, Y], SUV / HU
    x0, y0 = ((n - min(crop, n)) // 2 for n in image.shape)
    image = np.ascontiguousarray(image[x0 : x0 + crop, y0 : y0 + crop])
    partition = get_partitioner(parser.get_parsed_content("region_method"), modality=modality,
                                **parser.get_parsed_content("region_kwargs"))  # fmt: skip
    regions = np.asarray(partition(image[None]))[0]
    assert len(np.unique(regions)) > 1
    normalised = normalize_units(image, modality, **parser.get_parsed_content("normalization"))
    return torch.from_numpy(np.stack([normalised, regions.astype(np.float32)]).astype(np.float32))[None]


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_ckpt_export_matches_eager(bundle, shipped_weights, dicom_subset, request, tmp_path):
    """``monai.bundle ckpt_export`` of the SHIPPED weights (the README's command) == eager, on a real slice."""
    ckpt = shipped_weights(bundle)
    configs = _root(bundle) / "configs"
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    net = parser.get_parsed_content("network_def").eval()
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    exported = tmp_path / "models" / "model.ts"
    exported.parent.mkdir()
    cmd = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(exported),
           "--ckpt_file", str(ckpt), "--meta_file", str(configs / "metadata.json"),
           "--config_file", str(configs / "inference.json")]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"ckpt_export failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    scripted = torch.jit.load(str(exported), map_location="cpu")
    # a real slice of the bundle's test patient (CT: a central 128 x 128 window of the 512 x 512 slice)
    series, start = ("real_pet_dir", 140) if bundle == "rat_pet" else ("real_ct_test_dir", 24)
    x = _real_input(bundle, parser, dicom_subset(request.getfixturevalue(series), start, 2), crop=128)
    with torch.no_grad():
        eager, ts = net(x), scripted(x)
    assert ts.shape == eager.shape == (1, 1, *x.shape[2:])
    assert not torch.allclose(eager, x[:, :1], atol=1e-3)  # the trained network changes the slice
    torch.testing.assert_close(ts, eager, atol=1e-5, rtol=1e-5)
    # the exported file carries the bundle's metadata (what the zoo serves next to the weights)
    extra = {"metadata.json": ""}
    torch.jit.load(str(exported), map_location="cpu", _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == _meta(bundle)["version"]


@pytest.mark.slow
def test_pins_exist_for_python_310(tmp_path):
    """Every pin resolves to a Python 3.10 binary wheel on the package index (metadata only, no wheel body).

    rat-monai is skipped: it is installed from this repository and not published on PyPI.
    """
    pins: dict[str, str] = {}
    for bundle in BUNDLES:
        pins.update(_declared(_meta(bundle)))
    reqs = sorted(f"{name}=={version}" for name, version in pins.items() if name not in NOT_ON_PYPI)
    assert len(reqs) >= 10

    def dry_run(requirements: list[str]) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--target", str(tmp_path / "target"), "--python-version", "3.10",
               "--only-binary=:all:", "--report", str(tmp_path / "report.json"), *requirements]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    proc = dry_run(reqs)
    if proc.returncode != 0 and any(m in proc.stderr for m in REGISTRY_DOWN):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"package index unreachable under CI:\n{proc.stderr[-2000:]}")
        pytest.skip("package index unreachable (no network): cannot check the pins against PyPI")
    if proc.returncode != 0:  # name the failing pins one by one
        failing = [r for r in reqs if dry_run([r]).returncode != 0]
        pytest.fail(f"no Python 3.10 wheel for {failing}:\n{proc.stderr[-2000:]}")
    report = json.loads((tmp_path / "report.json").read_text())
    resolved = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
    assert resolved == {r.split("==")[0].lower(): r.split("==")[1] for r in reqs}
    for item in report["install"]:
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1]
        assert wheel.endswith(".whl") and re.search(r"-(cp310|py3|py2\.py3|abi3|cp3\d*-abi3)", wheel), wheel
