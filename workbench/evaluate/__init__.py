"""Evaluation: task kinds, bundled bilingual suites, your own task files, a cached runner, and the
tables and charts that compare models.

    tasks.py      task kinds (multiple choice, generation, perplexity, identity) and Task
    judge.py      pairwise LLM-as-judge and arena win rates
    checks.py     answer extraction, exact/numeric match, instruction checks
    scoring.py    log-likelihoods with the shared question prefix computed once
    engines.py    the engine a run talks to (workbench.engine for chat)
    suites.py     bundled tasks and suites (assets/eval/)
    custom.py     JSONL / CSV / YAML task files
    generated.py  the generated arithmetic and reasoning sets, with checked answers
    cache.py      per-(model fingerprint, task version, sample) results in SQLite
    runner.py     the eval job: models x tasks -> an eval artifact
    stats.py      bootstrap confidence intervals
    report.py     leaderboards, per-sample differences, CSV / Markdown / JSON
    charts.py     grouped bars, radar, quality vs size or speed
"""
