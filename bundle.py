"""Moves a study's prepared data to a machine without network (lm_data/study/bundle.py).

  python bundle.py export --config=configs/size_ablation.py --workdir=runs/size \
      --bundle=size.tar.gz
  python bundle.py import --bundle=size.tar.gz --workdir=runs/size

`export` prepares what is missing (as `main.py --prepare_only`) and packs the
corpora, tasks, prepared arms and tokenizer; `import` unpacks them into
$LM_DATA_CACHE (default ~/.cache/lm_data) and the workdir. See docs/gpu.md.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from lm_data import logs
from lm_data.study import bundle

FLAGS = flags.FLAGS
COMMANDS = ('export', 'import')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Study workdir (holds tokenizer/).')
_BUNDLE = flags.DEFINE_string('bundle', None, 'The bundle file (.tar.gz) to write or read.')
config_flags.DEFINE_config_file('config', None, 'Ablation config file (export only).',
                                lock_config=True)
flags.mark_flags_as_required(['workdir', 'bundle'])


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'give one command: {" or ".join(COMMANDS)}; got {argv[1:]}')
  logs.quiet_libraries()
  if argv[1] == 'export':
    if FLAGS.config is None:
      raise app.UsageError('export needs --config (the study to prepare and pack)')
    manifest = bundle.export_bundle(FLAGS.config, _WORKDIR.value, _BUNDLE.value)
    print(f'bundle: {_BUNDLE.value} ({manifest["bundle_bytes"] / 1e6:.1f} MB)')
  else:
    bundle.import_bundle(_BUNDLE.value, _WORKDIR.value)
    print(f'imported: {_BUNDLE.value} -> {_WORKDIR.value}')


if __name__ == '__main__':
  app.run(main)
