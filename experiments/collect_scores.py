"""Pack every loose score file under experiments/runs/<dataset>/ into runs/<dataset>/scores.parquet.

    python experiments/collect_scores.py

Loose files are the ``scores/<setting>.jsonl`` (and ``.meta.json``) that older experiment scripts wrote
and the training runs' ``validation_scores.jsonl``; once packed (written atomically and read back) they
are deleted. Idempotent: a second run finds nothing loose and changes nothing. ``analyze.py`` and
``calibrate_runs.py`` run it first.
"""

from __future__ import annotations

from common import collect_scores


def main() -> None:
    from rella_hf.report import load_score_files

    for dataset, path in collect_scores().items():
        files = load_score_files(path.parent)
        print(f"{dataset}: {len(files)} score files, {sum(len(f['labels']) for f in files.values()):,} rows in {path}")


if __name__ == "__main__":
    main()
