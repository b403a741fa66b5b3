"""``emotk evaluate est``: emotion-style-transfer systems scored on the thesis's settings (Table 5.2).

One run folder ``OUT`` holds the whole evaluation::

    OUT/run.json, config.yaml, log.txt        provenance (config hash, model bundle / pair file / manifest hashes)
    OUT/pairs/<SETTING>.jsonl                 the pair files used (copied or built; emotk.eval.pairs format)
    OUT/plan.json                             what is scored: settings -> selected pair ids, systems, noise levels
    OUT/scores/scores[.shard-i-of-N].jsonl    journal (emotk.core.journal): a header, then one record per
                                              (system, noise, pair): the per-pair measurements
    OUT/report/                               results.json, results.csv, table.md, PNG plots (emotk.eval.report)

Systems: each model bundle given as ``--model [NAME=]DIR`` (default name ``s2s-zest``), optionally as the ablation
``NAME:fixed-durations`` (the duration predictor switched off: source durations kept), and the floors
``world-baseline`` and ``copy-source`` (:mod:`emotk.eval.baselines`). Every system converts every selected pair;
with ``noise.snr_db`` the sources are also corrupted at each SNR (noise per pair id, the same for every system).

Measures per pair (:mod:`emotk.eval.measures`; every backend's name lands in the report): Emo-Sim = cosine of the
emotion embeddings of reference vs converted (and source vs converted, for the any-to-any matrix); Spk-Sim =
cosine of Resemblyzer embeddings of the clean source vs converted; the converted output's Whisper transcript
(corpus-level WER/CER against the source transcript: the manifest's ``measures.transcript_field``, else Whisper on
the clean source) and its word timings; the reference's word timings (word speaking rate, PCC over pairs). The
word timings come from Whisper's word timestamps, not from the CTC forced alignment of the thesis (METHODS.md
section 6): a deviation, named in the report's ``rate`` backend. With ``measures.emotion=auto`` and no local
emotion2vec, Emo-Sim uses the evaluated bundle's own emotion encoder, which favours that bundle: such numbers
are not comparable with the thesis's (the report names the backend).

Resume and shards: every scored line is appended and fsynced before the next pair starts, so a killed run
continues with ``--resume`` without redoing a finished (system, noise, pair). ``--shard i/N`` scores the pairs
with index % N == i (index over the selected pairs, settings in order) into its own scores file; all shards may
write into the same OUT (a shard that starts while another sets the folder up waits for its run.json), and the
report is rebuilt from every scores file there after each run (its ``coverage`` says how many of the planned
lines exist), so the parts merge into the table of one run; ``--report-only`` after the last shard rebuilds it
from all of them.

One job per module: :mod:`.config` (the schema), :mod:`.systems` (``--model`` / ``systems`` parsing and the
transfer systems), :mod:`.plan` (pair files and the plan), :mod:`.scores` (the scores journals and the results
table), :mod:`.cache` (LRU and audio index), :mod:`.scorer` (the measures), :mod:`.provenance`, :mod:`.run`
(:func:`run_est`).
"""

from __future__ import annotations

from emotk.eval.est.config import TASK, EstBaseline, EstConfig, EstMeasures, EstNoise
from emotk.eval.est.plan import PLAN_FORMAT, make_plan, planned_keys, prepare_pairs, score_key
from emotk.eval.est.run import run_est
from emotk.eval.est.scorer import Scorer, choose_asr, choose_emotion
from emotk.eval.est.scores import SCORE_FORMAT, SCORES_KIND, build_results, read_scores
from emotk.eval.est.systems import System, parse_models, parse_systems

__all__ = ["EstConfig", "EstMeasures", "EstNoise", "EstBaseline", "System", "Scorer", "TASK", "PLAN_FORMAT",
           "SCORE_FORMAT", "SCORES_KIND", "build_results", "choose_asr", "choose_emotion", "make_plan", "parse_models",
           "parse_systems", "planned_keys", "prepare_pairs", "read_scores", "run_est", "score_key"]
