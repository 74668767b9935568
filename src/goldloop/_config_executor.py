"""The `[executor]` section of goldloop.toml: where the heavy stages run (see
:mod:`goldloop.executor`). Re-exported by :mod:`goldloop.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config_fields import setting as _f


@dataclass
class ExecutorConfig:
    backend: str = _f("local", "`local`: every stage in this process (no Ray needed). `ray`: generation runs on "
                               "a Ray cluster, one actor per endpoint of `[llm] base_url` and `base_urls`, each "
                               "with goldloop's own client and limits; replies come back to this process, which "
                               "stores each as it arrives, so request keys, records and resuming are those of "
                               "the local path. The filters run on Ray Data with the verdicts of the local path "
                               "(the rules, leakage, label consistency and exact, near and semantic dedup; the "
                               "judge, synthetic selection and the collapse guard stay in this process), and so "
                               "does the scoring of the pool for suggestions; with "
                               "`embed_actors`, embedding runs on Ray too. Install Ray with goldloop's `ray` extra.",
                      choices=("local", "ray"))
    address: str = _f("", "The Ray cluster: empty starts a private Ray instance on this machine for the run; "
                          "`auto` joins the cluster started here with `ray start`; `ray://HOST:10001` reaches a "
                          "remote one (KubeRay, `ray start --head`).")
    num_cpus: int = _f(0, "A private Ray instance only: the CPUs it may use (0: all of this machine's).",
                       minimum=0)
    actors_per_endpoint: int = _f(1, "Ray actors per endpoint; each runs `[llm] concurrency` requests at once "
                                     "under that endpoint's share of `[llm] requests_per_minute` and "
                                     "`tokens_per_minute`.", minimum=1)
    shared_dir: str = _f("", "`ray`: the folder the filter stage writes the round's Parquet shards and shuffle "
                             "files to (removed when the stage ends). Empty: a temporary folder on this machine, "
                             "which is right for a private Ray instance or a cluster on this machine; on a "
                             "cluster of several machines, a folder every node sees at the same path (an NFS "
                             "mount, a mounted bucket).")
    filter_actors: int = _f(0, "`ray`: the most Ray actors that judge the round's candidates, or score shards of "
                               "the pool, at once, one CPU each (0: one per CPU of the cluster).", minimum=0)
    pool_sample: int = _f(20000, "`ray`: picking typical pool records fits k-means on at most this many of a "
                                 "predicted label's rows (a seeded sample of a bigger label; every row of the "
                                 "label is then assigned to its nearest centre). Up to it, the picks are those "
                                 "of the local path; the goldloop process holds this many vectors per label. "
                                 "A generate project's pool prompts are clustered on a seeded sample of this size "
                                 "too, on either backend.",
                          minimum=100)
    embed_actors: int = _f(0, "`ray`: Ray actors that embed texts, each with its own copy of the `[embed]` model "
                              "(0: embed in this process). Vectors come back in order and are cached in the "
                              "store as before.", minimum=0)
    embed_gpus: float = _f(0.0, "`embed_actors`: GPUs (or a fraction of one) each embedding actor asks Ray for; "
                                "0 embeds on CPU.", minimum=0.0)
    reply_batch: int = _f(1, "Generation replies committed to the store per transaction (one audit entry each). "
                             "1: each reply is committed before the next is taken from the backend, so a killed "
                             "run loses no reply it was handed. More: the store takes thousands of replies a "
                             "second (a cluster of endpoints); a killed run then loses at most the replies not "
                             "yet committed, whose requests the next run sends again. Any stop that lets goldloop "
                             "finish (Ctrl-C, an error) commits what waits first.", minimum=1)
    reply_batch_seconds: float = _f(2.0, "`reply_batch` > 1: replies that have waited this long are committed "
                                         "with the next reply, however few.", minimum=0.0)
