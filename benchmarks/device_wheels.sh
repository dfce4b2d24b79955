#!/usr/bin/env bash
# Downloads the wheels the project's GPU machine lacks (x86-64, CPython 3.12) into
# DIR (default .whl, git-ignored through .git/info/exclude), for the device tool's
# `carry` (docs/gpu.md, 'On the device machine'):
#   DIR/site    lm_data's own needs missing from the device image (ml_collections,
#               grain, tensorflow-datasets, array-record and their missing needs)
#   DIR/hfflax  transformers 4.57.6 + huggingface-hub 0.36.0 + tokenizers 0.22.1,
#               the HF Flax peer's, installed apart from the image's transformers 5
# Usage: bash benchmarks/device_wheels.sh [DIR] [--benchmark-only]
#   --benchmark-only: of DIR/site only ml_collections (all the benchmarks and
#   tests/models import), ~0.1 MB instead of ~13 MB.
set -euo pipefail
dir=${1:-.whl}
only_benchmark=${2:-}
pip=(python3 -m pip)
[ -x .venv/bin/python ] && pip=(.venv/bin/python -m pip)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
get() {  # get SUBDIR SPEC...: binary wheels for cp312 x86-64, no dependencies
  local sub=$1; shift
  "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$dir/$sub" "$@"
}
mkdir -p "$dir/site" "$dir/hfflax"
get site ml_collections==1.1.0
if [ "$only_benchmark" != --benchmark-only ]; then
  # The versions this project's venv runs; the rest are what the image lacks
  # (KINDS.md's package list) of their Requires-Dist.
  get site grain==0.2.18 array-record==0.8.6 tensorflow-datasets==4.9.10 \
    importlib_resources portpicker dm-tree immutabledict simple_parsing \
    docstring-parser tensorflow-metadata googleapis-common-protos termcolor toml
  # promise is published as a source archive only: build its (pure-Python) wheel.
  "${pip[@]}" wheel -q --no-deps -w "$dir/site" promise==2.3
fi
get hfflax transformers==4.57.6 huggingface-hub==0.36.0 tokenizers==0.22.1
du -sh "$dir"/site "$dir"/hfflax
