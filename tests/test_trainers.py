"""The `classify` trainers behind build_classifier: linear (default) and setfit (contrastive MiniLM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from goldloop.config import Config
from goldloop.embed import HashingEmbedder
from goldloop.errors import ConfigError, StageError
from goldloop.records import Record
from goldloop.train import LinearClassifier, LinearTextClassifier, TextClassifier, build_classifier
from goldloop.train._contrastive import ContrastiveClassifier, sample_pairs

from .conftest import VOCAB, fake_config, make_rows


def _records(per_label: int = 12, seed: int = 0) -> list[Record]:
    return [Record.gold(text, label) for text, label in make_rows(per_label, seed)]


def _held_out() -> list[tuple[str, str]]:
    return [(f"my {' '.join(words.split()[i:i + 6])} please help", label)
            for label, words in VOCAB.items() for i in (0, 3)]


def test_the_default_is_linear_and_learns() -> None:
    clf = build_classifier(fake_config(), HashingEmbedder())
    assert isinstance(clf, LinearTextClassifier) and isinstance(clf, TextClassifier)
    clf.fit(_records())
    assert clf.labels == sorted(VOCAB)
    texts, truth = zip(*_held_out())
    proba = clf.predict_proba(list(texts))
    assert proba.shape == (len(texts), 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert clf.predict(list(texts)) == list(truth)
    assert clf.predict([]) == [] and clf.predict_proba([]).shape == (0, 3)


def test_linear_behind_the_interface_matches_the_classifier_on_vectors() -> None:
    records, embedder = _records(), HashingEmbedder()
    weights = [1.0 if i % 3 else 0.3 for i in range(len(records))]
    cfg = fake_config(train={"C": 2.0}, project={"seed": 5})
    via_interface = build_classifier(cfg, embedder).fit(records, weights)
    X = embedder.embed([r.text for r in records])
    direct = LinearClassifier(C=2.0, seed=5).fit(X, [r.label for r in records], weights)
    texts = [t for t, _ in _held_out()]
    assert np.allclose(via_interface.predict_proba(texts), direct.predict_proba(embedder.embed(texts)))


def test_weights_count() -> None:
    records = _records(per_label=6)
    wrong = Record.gold("my password login reset locked please help", "billing")   # a mislabelled row
    texts = ["my password login reset locked please help"]
    heavy = build_classifier(fake_config(train={"C": 100.0}), HashingEmbedder()).fit(records + [wrong])
    assert heavy.predict(texts) == ["billing"]
    ignored = build_classifier(fake_config(train={"C": 100.0}), HashingEmbedder())
    ignored.fit(records + [wrong], [1.0] * len(records) + [0.0])
    assert ignored.predict(texts) == ["account"]


def test_bad_training_input_is_refused_clearly() -> None:
    clf = build_classifier(fake_config(), HashingEmbedder())
    with pytest.raises(StageError, match="not trained yet"):
        clf.predict(["anything"])
    with pytest.raises(StageError, match="at least two labels; the data has 1"):
        clf.fit([r for r in _records() if r.label == "billing"])
    with pytest.raises(StageError, match="36 records but 2 weights"):
        clf.fit(_records(), [1.0, 1.0])
    with pytest.raises(StageError, match="finite and non-negative"):
        clf.fit(_records(), [-1.0] * 36)


def test_the_config_chooses_the_trainer() -> None:
    cfg = fake_config(train={"classifier": "setfit", "setfit_iterations": 3, "setfit_max_tokens": 64})
    clf = build_classifier(cfg, HashingEmbedder())
    assert isinstance(clf, ContrastiveClassifier) and clf.name == "setfit.v1"
    assert clf.iterations == 3 and clf.max_tokens == 64
    with pytest.raises(ConfigError, match=r"\[train\] classifier must be one of linear, setfit"):
        Config.from_dict({"train": {"classifier": "bert"}})


def test_pairs_are_balanced_labelled_and_skip_zero_weight_rows() -> None:
    labels = ["a"] * 4 + ["b"] * 3 + ["c"]
    weights = np.array([1, 1, 1, 0, 1, 0.3, 1, 1], dtype=float)
    pairs = sample_pairs(labels, weights, iterations=3, rng=np.random.default_rng(1))
    assert all(3 not in (i, j) for i, j, _ in pairs), "a row of weight 0 was paired"
    for i, j, target in pairs:
        assert i != j and target == (1.0 if labels[i] == labels[j] else 0.0)
    anchors = [i for i, _, _ in pairs]
    assert anchors.count(7) == 3                   # `c` has no partner of its own label: negatives only
    assert anchors.count(0) == 6 and anchors.count(4) == 6
    again = sample_pairs(labels, weights, iterations=3, rng=np.random.default_rng(1))
    assert again == pairs


def _tiny_sentence_encoder(folder: Path):
    """A random two-layer BERT with a word-level tokenizer over the test vocabulary, as a SentenceTransformer."""
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:       # sentence-transformers before 6
        from sentence_transformers import models
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = sorted({w for text in VOCAB.values() for w in text.split()} | {"my", "please", "help"})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)

    def load(device: str) -> SentenceTransformer:
        return SentenceTransformer(modules=[models.Transformer(str(folder), max_seq_length=32),
                                            models.Pooling(32, "mean")], device=device)

    return load


def test_contrastive_training_runs_and_pulls_labels_apart(tmp_path: Path) -> None:
    load = _tiny_sentence_encoder(tmp_path)
    records = _records(per_label=8)
    clf = ContrastiveClassifier(iterations=4, batch_size=8, learning_rate=1e-3, C=10.0, seed=0, device="cpu",
                                load_body=load)
    clf.fit(records)
    assert len(clf.losses) == -(-4 * 2 * len(records) // 8) and all(np.isfinite(clf.losses))
    first, last = np.mean(clf.losses[:4]), np.mean(clf.losses[-4:])
    assert last < first, f"the contrastive loss did not fall ({first:.3f} -> {last:.3f})"
    texts, truth = zip(*_held_out())
    assert np.mean(np.array(clf.predict(list(texts))) == np.array(truth)) >= 0.8
    assert clf.predict_proba(list(texts)).shape == (len(texts), 3)


@pytest.mark.slow
def test_setfit_on_minilm_through_evaluation(project) -> None:
    from goldloop.embed import CachedEmbedder
    from goldloop.evaluate import evaluate_snapshot
    from goldloop.snapshot import build_snapshot

    project_dir, cfg, store = project
    cfg.train.classifier = "setfit"
    cfg.train.setfit_iterations = 1
    snap = build_snapshot(store, cfg, store.open_round())
    evaluation = evaluate_snapshot(store, cfg, snap, CachedEmbedder(HashingEmbedder(), store))
    assert evaluation.gold_only["macro_f1"] >= 0.9, evaluation.gold_only
