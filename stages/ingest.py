"""Stage ingest: write the raw KuaiRec 2.0 CSVs to data/raw (simulated, or the real archive).

See docs/design/stages.md.
"""

from __future__ import annotations

from pathlib import Path

from reco.cli import run_stage

RAW_DIR = Path("data/raw")


def main() -> None:
    from reco.io import atomic_dir, folder_checksums, write_json
    from reco.params import as_dict, load_section
    from reco.progress import report
    from reco.schema import RawFiles

    data = load_section("data")
    with atomic_dir(RAW_DIR) as tmp:
        if data.source == "simulate":
            from reco.data.simulator import simulate

            stats = simulate(tmp, profile=data.profile, seed=data.seed, scale=data.scale, story=data.story)
            stats.pop("seconds", None)  # wall time is not data: it would make the output non-reproducible
            manifest = {
                "source": "simulate",
                "profile": data.profile,
                "story": data.story,
                "seed": data.seed,
                "scale": data.scale,
                "stats": stats,
            }
        else:
            from reco.data.download import ingest_kuairec

            manifest = ingest_kuairec(data, tmp)
        manifest["params"] = as_dict(data)
        # Hashed here, once, while the files are fresh in the page cache: report's model card reuses
        # them instead of reading the raw files again on every experiment.
        report("checksums of the raw files")
        manifest["checksums"] = folder_checksums(tmp)
        write_json(manifest, tmp / RawFiles.manifest)


if __name__ == "__main__":
    run_stage("ingest", main)
