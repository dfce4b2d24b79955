"""Runs a data ablation: for each arm prepare data -> pretrain -> fine-tune -> report.

  python main.py --config=configs/size_ablation.py --workdir=runs/size
  python main.py --config=configs/size_ablation.py:smoke --workdir=/tmp/smoke

Re-running the same command resumes: finished arms are skipped and an
interrupted arm continues from its last checkpoint.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from lm_data import distributed
from lm_data import logs
from lm_data.study import run

FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for this ablation run.')
config_flags.DEFINE_config_file('config', None, 'Ablation config file.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logs.quiet_libraries()
  distributed.initialize()
  run.run_study(FLAGS.config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
