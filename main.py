"""Runs a data ablation: for each arm prepare data -> pretrain -> fine-tune -> report.

  python main.py --config=configs/size_ablation.py --workdir=runs/size
  python main.py --config=configs/size_ablation.py:smoke --workdir=/tmp/smoke
  python main.py --config=configs/size_ablation.py --workdir=runs/size --prepare_only
  python main.py --verify_cache

Re-running the same command resumes: finished arms are skipped and an
interrupted arm continues from its last checkpoint. A mistake in the config or
the workdir is reported in one line before any work (exit status 1);
--verbosity=1 adds its traceback.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from lm_data import cli
from lm_data import compile_cache
from lm_data import distributed
from lm_data import logs
from lm_data.study import run

FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for this ablation run.')
config_flags.DEFINE_config_file('config', None, 'Ablation config file.',
                                lock_config=True)
_PREPARE_ONLY = flags.DEFINE_bool(
    'prepare_only', False,
    'Fetch the archives, build the corpora, train the tokenizer, prepare every arm '
    'and parse every task; train nothing (then `bundle.py export`, docs/gpu.md).')
_VERIFY_CACHE = flags.DEFINE_bool(
    'verify_cache', False,
    'Re-check the sha256 of every cached archive ($LM_DATA_CACHE), one line each; '
    'exit status 1 on a mismatch. Alone it only checks; with --config, the study '
    'runs if all is well.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logs.quiet_libraries()
  if _VERIFY_CACHE.value:
    status = cli.verify_cache()
    if status or FLAGS.config is None:
      sys.exit(status)
  if FLAGS.config is None or _WORKDIR.value is None:
    cli.fail('--config and --workdir are required (only --verify_cache runs without them)')
  with cli.user_errors():
    distributed.initialize()
    compile_cache.enable(FLAGS.config.get('cache_dir') or None)
    if _PREPARE_ONLY.value:
      run.prepare_study(FLAGS.config, _WORKDIR.value)
    else:
      run.run_study(FLAGS.config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
