r"""CLIP on rendered shapes: does the text tower bind colours to shapes it never saw together?

  python -m train_lib.main --config=experiments/shapes_clip.py --workdir=/tmp/lamina/shapes_clip

Args: loss=clip|siglip, epochs=N (default 10), tiny=True. The data set (shapes_captions: 48x48
scenes of one to three shapes, captioned left to right) holds four colour-shape pairs out of
training. Towers: a CNN over the image and the text encoder over the caption's words. Evaluators:
image-text retrieval recall@1 and @5 on the seen-pair test scenes and, next to them, on the
test_unseen scenes, each of which has a held-out pair; a hit is any item with the query's exact
caption, since scenes of one object often share one.
"""

import ml_collections

from experiments import common
from input_pipeline.builders import shapes_captions


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, loss='clip', epochs=10.0, tiny=False)
  config = common.base_config()
  config.data.name = 'shapes_captions'
  config.data.pp_train = 'value_range(0, 1)'
  config.data.pp_eval = config.data.pp_train
  config.task = ml_collections.ConfigDict({
      'name': 'contrastive', 'loss': arg.loss, 'embed_dim': 64,
      'towers': {
          'image': {'input': 'image', 'model': {'name': 'cnn', 'features': (32, 64, 64), 'hidden': ()}},
          'text': {'input': 'caption', 'model': {
              'name': 'text_encoder', 'vocab_size': shapes_captions.TOKENIZER.vocab_size, 'width': 64,
              'num_layers': 2, 'num_heads': 4, 'max_len': shapes_captions.CAPTION_LENGTH}},
      }})
  config.compute_dtype = 'float32'
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = arg.epochs
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 200
  same_caption = {'type': 'retrieval', 'match': 'label', 'label_key': 'caption', 'ks': (1, 5)}
  config.evals.retrieval_seen = {**same_caption, 'split': 'test'}
  config.evals.retrieval_unseen = {**same_caption, 'split': 'test_unseen'}
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint.every = 1000
  if arg.tiny:
    common.shrink_for_tiny(config, eval_split='test[:64]', evaluator_examples=64)
  return config
