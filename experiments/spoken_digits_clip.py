r"""Three-tower CLIP on spoken digits: speech (log-mel spectrograms), MNIST images and spellings.

  python -m train_lib.main --config=experiments/spoken_digits_clip.py --workdir=/tmp/lamina/spoken_digits_clip

Args: loss=clip|siglip, epochs=N (default 30), tiny=True. The data set (spoken_digits: espeak-ng
voices, the test split's voices never heard in training) is synthesised on first use. Towers: a
small CNN over 98 x 40 log-mel frames, the digits CNN over the images, the text encoder over the
letters; each ends in a linear projection to one 64-d space. Every pair of towers is contrasted
over the batch. Evaluators: the task's in-batch metrics, and digit retrieval recall@1 and @5 over
the whole test split for speech to image, image to speech and speech to text. Target (issue 30):
speech-to-image digit retrieval top-1 of at least 90% on the held-out voices.
"""

import ml_collections

from experiments import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, loss='clip', epochs=30.0, tiny=False)
  config = common.base_config()
  config.data.name = 'spoken_digits'
  config.data.pp_train = "value_range(0, 1)|log_mel(key='audio')"
  config.data.pp_eval = config.data.pp_train
  config.task = ml_collections.ConfigDict({
      'name': 'contrastive', 'loss': arg.loss, 'embed_dim': 64,
      'towers': {
          'speech': {'input': 'audio', 'model': {'name': 'cnn', 'features': (16, 32, 64), 'hidden': ()}},
          'image': {'input': 'image', 'model': {'name': 'cnn', 'features': (16, 32), 'hidden': ()}},
          'text': {'input': 'text', 'model': {'name': 'text_encoder', 'vocab_size': 27, 'width': 32,
                                              'num_layers': 1, 'num_heads': 2, 'max_len': 5}},
      }})
  config.compute_dtype = 'float32'
  config.batch_size = 64
  config.eval_batch_size = 560
  config.num_epochs = arg.epochs
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  # Digit retrieval across modalities over the whole test split (held-out voices): a hit is an
  # item of the query's digit, since every digit has 56 clips, images and identical spellings.
  config.evals.retrieval = {'type': 'retrieval', 'match': 'label', 'ks': (1, 5),
                            'pairs': (('speech', 'image'), ('image', 'speech'), ('speech', 'text'))}
  config.log_every = 50
  config.eval_every = 500
  config.checkpoint.every = 500
  if arg.tiny:
    common.shrink_for_tiny(config, eval_split='test[:64]')
  return config
