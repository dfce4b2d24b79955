"""Fine-tunes and evaluates pretrained checkpoints on downstream tasks.

  python finetune.py --config=configs/finetune.py \
      --config.checkpoint=runs/size --workdir=runs/size

Reads checkpoints only (safe beside a running pretraining job); re-running the
same command skips results already written. A mistake in the config, a missing
or damaged checkpoint is reported in one line before any work (exit status 1);
--verbosity=1 adds its traceback.
"""

import jax
from absl import app
from absl import flags
from ml_collections import config_flags

from lm_data import checks
from lm_data import cli
from lm_data import compile_cache
from lm_data import distributed
from lm_data import logs
from lm_data.finetune import run

FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Results go to WORKDIR/arms/<arm>/eval/.')
config_flags.DEFINE_config_file('config', None, 'Fine-tuning config file.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logs.quiet_libraries()
  with cli.user_errors():
    distributed.initialize()
    compile_cache.enable()  # one program per task shape: re-runs skip compiling
    # Fine-tuning runs are small and independent: on a multi-host job only
    # process 0 evaluates and writes, the others have nothing to do.
    if jax.process_index() == 0:
      checks.check_finetune_config(FLAGS.config, _WORKDIR.value)
      run.evaluate(FLAGS.config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
