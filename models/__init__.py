"""lamina's models: pure flax.linen modules whose parameters carry logical axis names.

Build one by name with `models.get(name, num_classes=..., **fields)`; `models.names()`
lists the names.
"""

from models.cnn import CNN
from models.gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from models.logistic import LogisticRegression
from models.mlp import MLP
from models.recurrent import RecurrentClassifier, RecurrentForecaster, RecurrentLM
from models.registry import get, names
from models.resnet import ResNet
from models.transformer import TransformerLM
from models.unet import UNet
from models.vit import ViT

__all__ = ['CNN', 'DCGANDiscriminator', 'DCGANGenerator', 'LogisticRegression', 'MLP', 'MLPDiscriminator',
           'MLPGenerator', 'RecurrentClassifier', 'RecurrentForecaster', 'RecurrentLM', 'ResNet', 'TransformerLM',
           'UNet', 'ViT', 'get', 'names']
