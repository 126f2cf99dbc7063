"""lamina's input pipeline: tfds sources (offline builders included), pp ops, grain loaders.

  info = input_pipeline.dataset_info(config.data)          # num_classes / vocab_size, shapes, splits
  loader = input_pipeline.make_train_loader(config.data, global_batch_size=128,
      seed=0, process_index=jax.process_index(), process_count=jax.process_count())
  for batch in input_pipeline.make_eval_batches(config.data, split='test', ...): ...
"""

from input_pipeline import preprocess
from input_pipeline import text_data
from input_pipeline.builders import OFFLINE_DATASETS
from input_pipeline.eval_batches import make_eval_batches
from input_pipeline.dataset_info import dataset_info, dataset_tokenizer, num_examples
from input_pipeline.sources import get_source
from input_pipeline.train_loader import make_train_loader
from input_pipeline.validate import validate

__all__ = [
    'OFFLINE_DATASETS', 'dataset_info', 'dataset_tokenizer', 'get_source', 'make_eval_batches',
    'make_train_loader', 'num_examples', 'preprocess', 'text_data', 'validate',
]
