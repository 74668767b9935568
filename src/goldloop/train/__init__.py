"""Trainers.

`classify`: :func:`build_classifier` returns the :class:`TextClassifier` that
``[train] classifier`` names: `linear` (:class:`LinearTextClassifier`, frozen MiniLM
embeddings + logistic regression) or `setfit` (:class:`ContrastiveClassifier`, MiniLM
fine-tuned on contrastive pairs, then the same regression head).

`generate`: :func:`train_generator` fine-tunes a causal language model on an exported
SFT, DPO or KTO dataset with TRL and a LoRA adapter (needs the `train` extra).
"""

from ._base import TextClassifier, check_training_data, row_weights, stratified_folds
from ._classifier import LinearClassifier, LinearTextClassifier
from ._contrastive import ContrastiveClassifier
from ._factory import CLASSIFIERS, build_classifier
from ._trl import GeneratorTraining, LoraSettings, train_generator
from ._trl_data import METHODS, load_training_rows

__all__ = ["CLASSIFIERS", "METHODS", "ContrastiveClassifier", "GeneratorTraining", "LinearClassifier", "LinearTextClassifier",
           "LoraSettings", "TextClassifier", "build_classifier", "check_training_data", "load_training_rows", "row_weights", "stratified_folds",
           "train_generator"]
