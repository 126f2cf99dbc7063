r"""Distilling the character-level Shakespeare GPT (experiments/shakespeare_gpt.py) into one 7.5x smaller.

  python -m train_lib.main --config=experiments/shakespeare_gpt.py --workdir=/tmp/lamina/shakespeare_gpt
  python -m train_lib.main --config=experiments/shakespeare_distill.py:teacher=/tmp/lamina/shakespeare_gpt \
      --workdir=/tmp/lamina/shakespeare_distill
  # The same student on the text alone:
  python -m train_lib.main --config=experiments/shakespeare_distill.py:teacher= --workdir=/tmp/lamina/shakespeare_small

Args: teacher=WORKDIR (a shakespeare_gpt run: 4 layers of width 128; '' trains the student on
the next characters alone), alpha=0.5, temperature=2.0, steps=N, seed=N, tiny=True. The student
is 2 layers of width 64 trained as the teacher was (nanoGPT's CPU recipe); every position's
next-character distribution is distilled, so each window teaches seq_len soft targets. The
teacher's tokenizer is the student's (both read the same char vocabulary of the same text).
"""

import ml_collections

from experiments import common, shakespeare_gpt

STUDENT = {'width': 64, 'num_layers': 2, 'num_heads': 4}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, teacher='/tmp/lamina/shakespeare_gpt', alpha=0.5, temperature=2.0, steps=2000, seed=0,
                         tiny=False)
  config = shakespeare_gpt.get_config('tiny=True' if arg.tiny else None)
  config.seed = arg.seed
  config.model.update(STUDENT)
  if arg.teacher:
    config.task = ml_collections.ConfigDict({'name': 'distillation', 'student': 'language_model',
                                             'teacher': 'teacher', 'alpha': arg.alpha, 'temperature': arg.temperature})
    config.frozen.teacher = {'workdir': arg.teacher}
  if not arg.tiny:
    config.total_steps = arg.steps
  return config
