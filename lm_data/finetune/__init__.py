"""Fine-tuning and evaluation of pretrained encoders on downstream tasks.

Entry points: `run.evaluate(config, workdir)` (the finetune.py binary),
`run.evaluate_checkpoint` / `run.evaluate_arm` (one arm, for the study), and
`tasks.eval_texts()` (evaluation texts for decontaminating pretraining data).
"""
