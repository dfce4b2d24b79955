"""The console filter: project INFO kept, library INFO and expected warnings dropped."""

import logging

from lm_data import logs


def _record(path, level, msg):
  return logging.LogRecord('x', level, path, 1, msg, (), None)


def test_filter_keeps_project_info_and_drops_library_noise():
  f = logs._ProjectInfoFilter()
  assert f.filter(_record('/src/lm_data/train/trainer.py', logging.INFO, 'step 1'))
  assert not f.filter(_record('/site-packages/orbax/x.py', logging.INFO, 'saved'))
  assert f.filter(_record('/site-packages/orbax/x.py', logging.WARNING, 'disk full'))
  assert not f.filter(_record('/site-packages/orbax/checkpoint_manager.py', logging.WARNING,
                              'Given directory is read only=%s'))
