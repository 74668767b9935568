"""Near-duplicate text detection: MinHash sketches and LSH banding from rensa (Rust).

Similarity is the Jaccard index of the two texts' sets of words (word unigrams, split on
whitespace). Word unigrams were chosen over word 2/3-grams and character 3/4/5/7-grams by
measurement on 8-60-word windows of real posts (20 Newsgroups) with 1-3 light edits (word
swaps, drops, insertions): the share of edited pairs still at Jaccard >= 0.8 was
1.00/0.99/0.95 for 1/2/3 edits with unigrams, against 0.98/0.91/0.79 for character
3-grams, 0.90/0.69/0.49 for character 5-grams and 0.61/0.18/0.03 for word 3-grams;
among texts of 15 words or fewer, one edit kept 100 % of pairs at >= 0.8 with unigrams
and 91 % with character 3-grams. Unrelated posts did not gain false matches (every pair
unigrams put at >= 0.8 also shared half of its word 3-grams), and a text has ~27
unigrams against ~140-160 character n-grams, so sketching is several times cheaper.
Word order is ignored: a text and its reordering are duplicates, which is the intent.

Estimated Jaccard comes from ``num_perm`` 32-bit MinHash slots, so its standard error is
about sqrt(J (1 - J) / num_perm): 0.035 at J = 0.8 with 128 slots. LSH only proposes
candidates; every reported pair has an estimated Jaccard >= ``threshold``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from rensa import RMinHash, RMinHashLSH

NEARDUP_VERSION = "minhash-words.v1"


def shingles(text: str) -> list[str]:
    """The tokens a text is compared by: its whitespace-separated words (a set in effect)."""
    return text.split()


def candidate_probability(similarity: float, num_bands: int, rows: int) -> float:
    """Chance that LSH with ``num_bands`` bands of ``rows`` slots proposes a pair of that Jaccard."""
    return 1.0 - (1.0 - similarity ** rows) ** num_bands


def choose_bands(threshold: float, num_perm: int, min_probability: float = 0.9) -> int:
    """The fewest bands (dividing ``num_perm``) that propose a pair at ``threshold`` with at
    least ``min_probability``: fewer bands mean fewer false candidates to verify, more bands
    fewer missed pairs. For threshold 0.8 and 128 slots: 16 bands of 8, 0.95 at J = 0.8."""
    for bands in range(1, num_perm + 1):
        if num_perm % bands == 0 and candidate_probability(threshold, bands, num_perm // bands) >= min_probability:
            return bands
    return num_perm


def _has_words(text: str) -> bool:
    return bool(text) and not text.isspace()


class NearDupIndex:
    """An index of texts for near-duplicate look-ups by estimated word Jaccard.

    ``add`` indexes texts under caller keys; ``query`` finds indexed texts similar to new
    ones; ``pairs`` finds near-duplicate pairs within one collection without touching the
    index. Texts with no words are never indexed nor matched. Results are deterministic
    for a given ``seed``.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, num_bands: int | None = None,
                 seed: int = 0) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.num_bands = num_bands or choose_bands(threshold, num_perm)
        if num_perm % self.num_bands:
            raise ValueError(f"num_bands = {self.num_bands} must divide num_perm = {num_perm}")
        self.seed = seed
        self._lsh = self._new_lsh()
        self._keys: list[Hashable] = []
        self._sketches: list[RMinHash] = []

    @property
    def name(self) -> str:
        """Versioned description of what a score from this index means, for verdicts and records."""
        return f"{NEARDUP_VERSION}:p{self.num_perm}:b{self.num_bands}:seed{self.seed}"

    def __len__(self) -> int:
        return len(self._keys)

    def _new_lsh(self) -> RMinHashLSH:
        return RMinHashLSH(self.threshold, self.num_perm, self.num_bands)

    def _sketch(self, texts: Iterable[str]) -> list[RMinHash]:
        # A lazy iterable: each text's word list is hashed and freed at once, never all held.
        return RMinHash.from_token_sets(map(shingles, texts), self.num_perm, self.seed)

    def add(self, keys: Sequence[Hashable], texts: Sequence[str]) -> None:
        """Index ``texts`` under ``keys`` (one key per text, used as given in results)."""
        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} keys for {len(texts)} texts")
        present = [i for i, text in enumerate(texts) if _has_words(text)]
        if not present:
            return
        sketches = self._sketch(texts[i] for i in present)
        self._lsh.insert_many(sketches, len(self._keys))
        self._keys.extend(keys[i] for i in present)
        self._sketches.extend(sketches)

    def query(self, texts: Sequence[str]) -> list[list[tuple[Hashable, float]]]:
        """For each text, the indexed (key, estimated Jaccard) at or above the threshold, most
        similar first, ties in the order they were added."""
        out: list[list[tuple[Hashable, float]]] = [[] for _ in texts]
        present = [i for i, text in enumerate(texts) if _has_words(text)]
        if not present or not self._keys:
            return out
        sketches = self._sketch(texts[i] for i in present)
        for row, sketch, candidates in zip(present, sketches, self._lsh.query_all(sketches)):
            hits = [(-sketch.jaccard(self._sketches[c]), c) for c in candidates]
            out[row] = [(self._keys[c], -negative) for negative, c in sorted(hits) if -negative >= self.threshold]
        return out

    def pairs(self, keys: Sequence[Hashable], texts: Sequence[str]) -> list[tuple[Hashable, Hashable, float]]:
        """Near-duplicate pairs within ``texts``: (key_a, key_b, estimated Jaccard), a before b
        in input order, pairs sorted by input position. The index itself is left unchanged.

        Two passes keep it fast and small: every text is sketched into one compact digest
        matrix (512 bytes a text at 128 slots) and banded once, which flags each text that
        shares a band with another; only the flagged texts, usually a small share, are
        sketched again as objects to list and verify their candidate pairs.
        """
        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} keys for {len(texts)} texts")
        present = [i for i, text in enumerate(texts) if _has_words(text)]
        matrix = RMinHash.digest_matrix_from_token_sets(map(shingles, (texts[i] for i in present)),
                                                        self.num_perm, self.seed)
        flags = self._new_lsh().query_duplicate_flags_matrix_one_shot(matrix)
        del matrix
        flagged = [i for i, flag in zip(present, flags) if flag]
        if not flagged:
            return []
        sketches = self._sketch(texts[i] for i in flagged)
        lsh = self._new_lsh()
        lsh.insert_many(sketches, 0)
        found = []
        for a, candidates in enumerate(lsh.query_all(sketches)):
            for b in candidates:
                if b > a:
                    similarity = sketches[a].jaccard(sketches[b])
                    if similarity >= self.threshold:
                        found.append((flagged[a], flagged[b], similarity))
        found.sort()
        return [(keys[a], keys[b], similarity) for a, b, similarity in found]


def near_duplicate_pairs(keys: Sequence[Hashable], texts: Sequence[str], threshold: float = 0.8,
                         num_perm: int = 128, seed: int = 0) -> list[tuple[Hashable, Hashable, float]]:
    """Near-duplicate pairs within one collection; see :meth:`NearDupIndex.pairs`."""
    return NearDupIndex(threshold=threshold, num_perm=num_perm, seed=seed).pairs(keys, texts)
