#!/usr/bin/env bash
# Creates (or refreshes) .venv with the pinned OpenMMLab stack and installs ipr_plugin in editable mode.
#
# Idempotent and quiet: each step prints one line; pip's output is kept in .venv/setup.log and shown only
# when a step fails. mmcv 2.1.0 has no wheel for this torch, so it is compiled from source once (about
# 10 minutes on 2 cores) and the wheel is cached outside the repository, keyed by the torch version it was
# built against, so later set-ups (a fresh clone on the same machine) take a few minutes.
#
# Environment: PYTHON (interpreter, default python3), IPR_VENV (default <repo>/.venv),
#              IPR_WHEEL_CACHE (default ~/.cache/ipr_plugin/wheels),
#              IPR_VENV_ADOPT=1 (install the pins into an existing environment this script did not make).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${IPR_VENV:-$ROOT/.venv}
CACHE=${IPR_WHEEL_CACHE:-$HOME/.cache/ipr_plugin/wheels}
PYTHON=${PYTHON:-python3}
TORCH=2.14.1 TORCHVISION=0.29.1 MMCV=2.1.0
LOG=$VENV/setup.log
t_start=$(date +%s)

say() { printf '[setup %4ss] %s\n' "$(( $(date +%s) - t_start ))" "$*"; }
run() {  # run a step quietly; on failure show the tail of its output and stop
  if ! "$@" >>"$LOG" 2>&1; then
    echo "[setup] FAILED: $*" >&2; tail -n 40 "$LOG" >&2; exit 1
  fi
}

# The stamp records what this environment was made from; when nothing changed the set-up is a no-op.
stamp_src=$(cat "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" "$ROOT/ipr_plugin/datasets/transforms/_jpeg_region.c" | sha1sum | cut -c1-12)
if [ -f "$VENV/.ipr_stamp" ] && [ "$(cat "$VENV/.ipr_stamp")" = "$stamp_src" ] \
   && "$VENV/bin/python" -c "import ipr_plugin" >/dev/null 2>&1; then
  exit 0
fi

# An environment of the user's own (IPR_VENV pointed at it) would have its torch, numpy and OpenMMLab packages
# replaced by the pins below: a CUDA torch by a CPU one, a working mmcv by a source build. This script's own leave a
# mark: .ipr_made, .ipr_stamp once complete, setup.log (all an earlier version's set-up that failed left)
if [ -x "$VENV/bin/python" ] && [ ! -f "$VENV/.ipr_made" ] && [ ! -f "$VENV/.ipr_stamp" ] && [ ! -f "$LOG" ] \
   && [ "${IPR_VENV_ADOPT:-0}" != 1 ]; then
  echo "[setup] $VENV is a Python environment this script did not make; setting it up would replace its torch," \
       "numpy and OpenMMLab packages with the pinned ones. To add the plugin to it: \`$VENV/bin/python -m pip" \
       "install --no-deps -e $ROOT\` (README, \"Installed from a wheel\"); to install the pins into it anyway:" \
       "IPR_VENV_ADOPT=1." >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
touch "$VENV/.ipr_made"
: >"$LOG"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
say "base tools (setuptools<82 for mim and mmcv's setup.py, numpy 1.26.4 for xtcocotools)"
run "${PIP[@]}" -q "setuptools>=77.0.3,<82" wheel "numpy==1.26.4"
say "torch $TORCH + torchvision $TORCHVISION"
run "${PIP[@]}" -q "torch==$TORCH" "torchvision==$TORCHVISION" "numpy==1.26.4"
# seaborn: mmpose's `analyze_logs` tool plots with it, though mmpose does not list it
say "OpenMMLab runtime dependencies"
run "${PIP[@]}" -q "numpy==1.26.4" "opencv-python==4.11.0.86" "pandas==2.3.3" "mmengine==0.10.7" \
  "xtcocotools==1.14.3" "pycocotools==2.0.11" "json-tricks==3.17.3" "munkres==3.0.0" "shapely==2.2.0" \
  "simplejpeg==1.9.0" addict yapf six terminaltables tqdm scipy matplotlib pillow \
  click colorama model-index rich tabulate requests \
  pytest onnx onnxruntime "seaborn==0.13.2"

torch_tag=$("$VENV/bin/python" -c "import torch; print(torch.__version__.replace('+', '_'))")
py_tag=$("$VENV/bin/python" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
wheel_dir=$CACHE/torch-$torch_tag
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV'" >/dev/null 2>&1; then
  if ! ls "$wheel_dir"/mmcv-$MMCV-$py_tag-*.whl >/dev/null 2>&1; then
    say "building mmcv $MMCV with ops from source against torch $torch_tag (about 10 minutes on 2 cores)"
    build=$(mktemp -d)
    run "$VENV/bin/python" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$build" "mmcv==$MMCV"
    tar -xzf "$build"/mmcv-$MMCV.tar.gz -C "$build"
    # torch >= 2.6's headers need C++20; mmcv 2.1.0 asks for C++17
    sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV/setup.py"
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      run "$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$build/dist" "$build/mmcv-$MMCV"
    mkdir -p "$wheel_dir"
    cp "$build"/dist/mmcv-$MMCV-*.whl "$wheel_dir/"
    rm -rf "$build"
  else
    say "mmcv $MMCV from the cached wheel in $wheel_dir"
  fi
  run "${PIP[@]}" -q --no-deps "$wheel_dir"/mmcv-$MMCV-$py_tag-*.whl
fi

say "mmdet 3.3.0, mmpose 1.3.2 and openmim 0.3.9 (without their broken dependency chains)"
run "${PIP[@]}" -q --no-deps "mmdet==3.3.0" "mmpose==1.3.2" "openmim==0.3.9"
say "ipr_plugin (editable)"
run "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"
run "$VENV/bin/python" -c "import ipr_plugin, mmcv.ops, mmpose.models, mmdet.models, xtcocotools.coco"
echo "$stamp_src" >"$VENV/.ipr_stamp"
say "environment ready: $VENV"
