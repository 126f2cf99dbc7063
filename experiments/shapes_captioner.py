r"""An image captioner on rendered shapes: a ViT encoder and the language model's decoder with
cross-attention, trained by teacher forcing, evaluated by decoding whole captions.

  python -m train_lib.main --config=experiments/shapes_captioner.py --workdir=/tmp/lamina/shapes_captioner
  python -m train_lib.sample --workdir=/tmp/lamina/shapes_captioner --image=scene.png --beam_size=4

Args: epochs=N (default 30), tiny=True. The data set (shapes_captions) describes one to three
shapes left to right ("a small red circle left of a large blue square"). Evaluators: exact match
and token accuracy of greedy and beam-search (width 4) captions on the test scenes, whose
colour-shape pairs training saw, and greedy on the test_unseen scenes, each of which has a pair
training never saw. Target (issue 30): exact match of at least 90% on the seen-pair scenes.
"""

import ml_collections

from experiments import common
from input_pipeline.builders import shapes_captions


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, epochs=30.0, tiny=False)
  config = common.base_config()
  config.data.name = 'shapes_captions'
  config.data.pp_train = 'value_range(0, 1)'
  config.data.pp_eval = config.data.pp_train
  config.task = ml_collections.ConfigDict({'name': 'captioning'})
  config.model = ml_collections.ConfigDict({
      'name': 'captioner', 'width': 64, 'num_layers': 2, 'num_heads': 4,
      'max_len': shapes_captions.CAPTION_LENGTH - 1,
      'encoder': {'name': 'vit', 'patch_size': 6, 'width': 64, 'num_layers': 3, 'num_heads': 4}})
  config.compute_dtype = 'float32'
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_epochs = arg.epochs
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 200
  config.evals.greedy = {'type': 'captioning', 'split': 'test'}
  config.evals.beam = {'type': 'captioning', 'split': 'test', 'beam_size': 4, 'every': 0}
  config.evals.greedy_unseen = {'type': 'captioning', 'split': 'test_unseen'}
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint.every = 1000
  if arg.tiny:
    common.shrink_for_tiny(config, eval_split='test[:64]', evaluator_examples=16)
  return config
