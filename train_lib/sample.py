r"""Command line: sample text from a trained language model, images from a generator, or captions.

  python -m train_lib.sample --workdir=/tmp/lamina/shakespeare_gpt --prompt="ROMEO:" \
      --max_new_tokens=500 --temperature=0.8 --top_k=40 --seed=0
  python -m train_lib.sample --workdir=/tmp/lamina/fashion_mnist_diffusion --num=64 \
      [--sampler=ddpm|ddim --steps=50 --eta=0 --guidance=2.0 --label=3] --seed=0 --out=grid.png
  python -m train_lib.sample --workdir=/tmp/lamina/shapes_captioner --image=picture.png [--beam_size=4]

The model, its config and (for text) its tokenizer all come from the checkpoint, so the text
decodes with the vocabulary it was trained on. Repeat --prompt for a batch. Images are
written as one grid (a class per column for a conditional model asked for every class);
sampler flags left out take the task's defaults (train_lib/tasks/diffusion.py), and a GAN
takes none. --image (repeatable) prints a captioner run's caption of each picture, decoded greedily
or with a beam of --beam_size (train_lib/image_captioning.py). Parameters are the EMA ones when the
run kept an EMA (as evaluation uses).
"""

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from etils import epath
from flax import linen as nn

import kernels
from input_pipeline import tokenizers
from train_lib import from_run, image_captioning, image_grid, image_sampling, log_filter, sampling, storage
from train_lib.errors import ConfigError
from train_lib.tasks.classification import build_model

flags.DEFINE_string('workdir', None, 'A language-model run\'s workdir (it holds checkpoints/).', required=True)
flags.DEFINE_multi_string('prompt', ['\n'], 'Text to continue; repeat the flag for a batch of prompts.')
flags.DEFINE_integer('max_new_tokens', 500, 'Tokens to generate per prompt.')
flags.DEFINE_float('temperature', 0.8, 'Softmax temperature; 0 is greedy.')
flags.DEFINE_integer('top_k', 40, 'Sample from the k most likely tokens; 0 for all.')
flags.DEFINE_integer('seed', 0, 'Sampling seed.')
flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
flags.DEFINE_integer('num', 64, 'Images to draw (generator runs).')
flags.DEFINE_string('out', None, 'Where the grid PNG of the images goes (generator runs).')
flags.DEFINE_string('sampler', None, "A diffusion model's sampler: 'ddim' or 'ddpm'.")
flags.DEFINE_integer('steps', None, "The sampler's denoising steps.")
flags.DEFINE_float('eta', None, "DDIM's stochasticity (0: deterministic, 1: DDPM's noise).")
flags.DEFINE_float('guidance', None, 'Classifier-free guidance scale (class-conditional models).')
flags.DEFINE_integer('label', None, 'Draw this class only (class-conditional models); default every class in turn.')
flags.DEFINE_multi_string('image', None, 'A picture to caption (captioner runs); repeat the flag for several.')
flags.DEFINE_integer('beam_size', 1, 'Beam width of caption decoding; 1 is greedy.')
flags.DEFINE_float('length_penalty', 0.0, "Caption beam search's GNMT length penalty alpha; 0 is none.")

# Flag -> the sampler setting it gives (train_lib/tasks/generative.py).
_SAMPLER_FLAGS = {'sampler': 'name', 'steps': 'steps', 'eta': 'eta', 'guidance': 'guidance'}
_TEXT_FLAGS = ('prompt', 'max_new_tokens', 'temperature', 'top_k')
_IMAGE_FLAGS = ('num', 'out', 'label', *_SAMPLER_FLAGS)
_CAPTION_FLAGS = ('beam_size', 'length_penalty')


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


def _given(names) -> list[str]:
  return [f'--{name}' for name in names if flags.FLAGS[name].present]


def _sample_text(f) -> None:
  if f.max_new_tokens <= 0 or f.temperature < 0 or f.top_k < 0:
    raise ValueError('--max_new_tokens must be > 0, --temperature >= 0 and --top_k >= 0')
  model, params, tokenizer, kernel_mode = load_model(f.workdir, f.step)
  prompts = [tokenizer.encode(p) for p in f.prompt]
  with kernels.use(kernel_mode):
    new = sampling.generate(model, params, prompts, max_new_tokens=f.max_new_tokens,
                            temperature=f.temperature, top_k=f.top_k, seed=f.seed)
  for prompt, tokens in zip(f.prompt, new):
    print(prompt + tokenizer.decode(tokens.tolist()))
    print('-' * 40)


def _sample_images(f, generator: image_sampling.Generator) -> None:
  if _given(_TEXT_FLAGS):
    raise ValueError(f'the language-model flags {", ".join(_given(_TEXT_FLAGS))} do not apply: this run draws images')
  if not f.out:
    raise ValueError('--out=FILE.png is required: where the grid of images goes')
  if f.num < 1:
    raise ValueError(f'--num must be >= 1, got {f.num}')
  settings = {key: getattr(f, name) for name, key in _SAMPLER_FLAGS.items() if flags.FLAGS[name].present}
  images = image_sampling.draw(generator, f.num, settings, label=f.label, seed=f.seed)
  task = generator.task
  columns = task.num_classes if task.conditional and f.label is None else None
  grid = image_grid.grid(images, task.pixel_range, columns=columns)
  storage.write_atomically(epath.Path(f.out), image_grid.png(grid))
  print(f'{f.num} images from step {generator.step} of {f.workdir} -> {f.out}')


def _caption(f) -> None:
  others = _given((*_TEXT_FLAGS, *_IMAGE_FLAGS, 'seed'))
  if others:
    raise ValueError(f'{", ".join(others)} do not apply to captioning an --image')
  if f.beam_size < 1 or f.length_penalty < 0:
    raise ValueError('--beam_size must be >= 1 and --length_penalty >= 0')
  missing = [path for path in f.image if not os.path.isfile(path)]
  if missing:
    raise ValueError(f'--image: no file {", ".join(map(repr, missing))}')
  run = image_captioning.load(f.workdir, f.step)
  images = np.stack([image_captioning.read_image(path, run.image_shape) for path in f.image])
  with kernels.use(run.task.config.get('kernels', 'auto')):
    captions = image_captioning.caption(run, images, beam_size=f.beam_size, length_penalty=f.length_penalty)
  for path, text in zip(f.image, captions):
    print(f'{path}: {text}')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  log_filter.quiet_library_info()
  f = flags.FLAGS
  try:
    if f.image:
      _caption(f)
      return
    if _given(_CAPTION_FLAGS):
      raise ValueError(f'{", ".join(_given(_CAPTION_FLAGS))} apply to captioning an --image only')
    generator = image_sampling.load(f.workdir, f.step) if image_sampling.is_generator_run(f.workdir) else None
    if generator is None:
      if _given(_IMAGE_FLAGS):
        raise ValueError(f'the image flags {", ".join(_given(_IMAGE_FLAGS))} do not apply: {f.workdir} is not an '
                         'image generator run')
      _sample_text(f)
    else:
      _sample_images(f, generator)
  except (ValueError, ConfigError) as e:
    sys.exit(f'lamina: sample: {e}')


if __name__ == '__main__':
  app.run(main)
