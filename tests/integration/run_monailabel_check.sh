#!/usr/bin/env bash
# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
#
# MONAI Label integration check of bundles/rat_pet and bundles/rat_ct in a SEPARATE virtual environment.
#
# monailabel pins numpy < 2 (pydicom-seg, numpymaxflow), so it cannot live in the project venv (numpy 2). This script
# creates (once) a venv under ${MONAILABEL_VENV:-~/.cache/rat-monai/monailabel-venv}, installs monailabel 0.8.5 with
# PyPI's torch/torchvision pair and rat-monai's remaining dependencies (--no-deps editable install of this checkout),
# then runs tests/integration/monailabel_check.py with the given arguments, e.g.
#
#     tests/integration/run_monailabel_check.sh                     # both bundles, CPU, 2 training iterations
#     tests/integration/run_monailabel_check.sh --device cuda --keep --work /tmp/ml_check
#     tests/integration/run_monailabel_check.sh --bundles /tmp/bundle_copy/rat_pet
#
# Environment: MONAILABEL_VENV (venv folder), PYTHON (interpreter for the venv, default python3),
# MONAILABEL_REINSTALL=1 (reinstall even when the pinned set is already there).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${MONAILABEL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rat-monai/monailabel-venv}"
PY="${PYTHON:-python3}"

# monailabel 0.8.5 brings numpy 1.26, monai, pytorch-ignite, nibabel, scikit-image, scipy, SimpleITK, tensorboard,
# tqdm, pillow, pydicom, pyyaml, fire and matplotlib; the rest of rat-monai's dependencies are added below. numpy<2 is
# repeated so that no newer pylibjpeg plugin pulls numpy 2; jsonschema stays at 3.2 (pydicom-seg pins < 4): rat-monai
# only needs jsonschema >= 4 to validate bundle metadata in its own tests, so `pip check` reports that one conflict.
REQS=(
    "monailabel==0.8.5"
    "torch==2.14.1"
    "torchvision==0.29.2"
    "monai==1.6.1"
    "pytorch-ignite==0.5.5"
    "numpy<2"
    "pydicom>=3.0"
    "segment-anything==1.0"
    "pylibjpeg>=2.0"
    "pylibjpeg-libjpeg>=2.1"
    "pylibjpeg-openjpeg>=2.3"
)
STAMP="$VENV/.rat_monai_reqs"
WANT="$(printf '%s\n' "${REQS[@]}")"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[run_monailabel_check] creating $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
fi
if [ "${MONAILABEL_REINSTALL:-0}" = "1" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[run_monailabel_check] installing: ${REQS[*]}"
    "$VENV/bin/python" -m pip install -q "${REQS[@]}"
    printf '%s\n' "${REQS[@]}" > "$STAMP"
fi
# pydicom-seg 0.4.1 (imported by `monailabel start_server`) still imports pydicom._storage_sopclass_uids, which
# pydicom 3 removed; rat-monai, dicomweb-client and pynetdicom need pydicom 3. One-line compat shim:
PYDICOM_DIR="$("$VENV/bin/python" -c 'import os, pydicom; print(os.path.dirname(pydicom.__file__))')"
SHIM="$PYDICOM_DIR/_storage_sopclass_uids.py"
if [ ! -f "$SHIM" ]; then
    echo "from pydicom.uid import SegmentationStorage  # noqa: F401  (pydicom-seg 0.4.1 shim for pydicom 3)" > "$SHIM"
fi
"$VENV/bin/python" -c "import monailabel.interfaces.app"  # what start_server imports

# this checkout, without its numpy>=2-era dependency resolution
"$VENV/bin/python" -m pip install -q --no-deps -e "$REPO"
"$VENV/bin/python" -m pip check || echo "[run_monailabel_check] note: pip check reported conflicts (see above)"

exec "$VENV/bin/python" "$REPO/tests/integration/monailabel_check.py" "$@"
