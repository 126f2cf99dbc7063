r"""Command line: sample text from a trained language model's latest checkpoint.

  python -m train_lib.sample --workdir=/tmp/lamina/shakespeare_gpt --prompt="ROMEO:" \
      --max_new_tokens=500 --temperature=0.8 --top_k=40 --seed=0

The model, its config and its tokenizer all come from the checkpoint, so the text
decodes with the vocabulary it was trained on. Repeat --prompt for a batch.
Parameters are the EMA ones when the run kept an EMA (as evaluation uses).
"""

import functools
import sys

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import linen as nn

import kernels
from input_pipeline import tokenizers
from train_lib import from_run, log_filter, sampling
from train_lib.errors import ConfigError
from train_lib.tasks.classification import build_model

flags.DEFINE_string('workdir', None, 'A language-model run\'s workdir (it holds checkpoints/).', required=True)
flags.DEFINE_multi_string('prompt', ['\n'], 'Text to continue; repeat the flag for a batch of prompts.')
flags.DEFINE_integer('max_new_tokens', 500, 'Tokens to generate per prompt.')
flags.DEFINE_float('temperature', 0.8, 'Softmax temperature; 0 is greedy.')
flags.DEFINE_integer('top_k', 40, 'Sample from the k most likely tokens; 0 for all.')
flags.DEFINE_integer('seed', 0, 'Sampling seed.')
flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')


def load_model(workdir: str, step: int | None = None) -> tuple[nn.Module, dict, tokenizers.Tokenizer, str]:
  """(model, params, tokenizer, the run's config.kernels) from a language-model run's checkpoint;
  one-line ValueError otherwise."""
  source = from_run.open_run(workdir, step, what='--workdir')
  if not source.has_item('tokenizer'):
    raise ValueError(f'the run in {workdir} did not train a language model on text (its checkpoint has no '
                     'tokenizer); sampling needs one, e.g. experiments/shakespeare_gpt.py')
  config = source.config
  tokenizer = tokenizers.from_json(from_run.read_json(source, 'tokenizer'))
  model = build_model(config.model, config, vocab_size=tokenizer.vocab_size)
  if not hasattr(model, 'decode'):
    raise ValueError(f'model {config.model.name!r} has no KV-cache decoding; sampling supports Transformer LMs '
                     '(transformer_lm)')
  init = functools.partial(model.init, train=False)
  shapes = nn.meta.unbox(jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32)))['params']
  key = 'ema_params' if config.ema_decay > 0 else 'params'
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
  return model, from_run.restore(source, {key: target})[key], tokenizer, config.get('kernels', 'auto')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  log_filter.quiet_library_info()
  f = flags.FLAGS
  if f.max_new_tokens <= 0 or f.temperature < 0 or f.top_k < 0:
    sys.exit('lamina: sample: --max_new_tokens must be > 0, --temperature >= 0 and --top_k >= 0')
  try:
    model, params, tokenizer, kernel_mode = load_model(f.workdir, f.step)
    prompts = [tokenizer.encode(p) for p in f.prompt]
    with kernels.use(kernel_mode):
      new = sampling.generate(model, params, prompts, max_new_tokens=f.max_new_tokens,
                              temperature=f.temperature, top_k=f.top_k, seed=f.seed)
  except (ValueError, ConfigError) as e:
    sys.exit(f'lamina: sample: {e}')
  for prompt, tokens in zip(f.prompt, new):
    print(prompt + tokenizer.decode(tokens.tolist()))
    print('-' * 40)


if __name__ == '__main__':
  app.run(main)
