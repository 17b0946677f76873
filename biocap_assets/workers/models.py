"""Worker: fill the Hugging Face cache with the weights the pipeline loads
(``python -m biocap_assets.workers.models --model OpenGVLab/InternVL3-38B-AWQ``).

Extras: ``models`` (hub names, see ``common/model_cache.py``), ``allow_patterns`` (files
to take from each; default all), ``clip`` (``{"model", "pretrained"}``: the open_clip
weights training starts from, resolved by open_clip to its hub repository and files).
Reports one row per repository: its commit, files and bytes in the cache.
"""

from __future__ import annotations

import argparse

from biocap_assets.common.model_cache import HubRepo, fetch
from biocap_assets.workers.runtime import run_main, worker_context


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", action="append", default=[], help="owner/name[@revision]")
    args, _ = parser.parse_known_args(argv)
    with worker_context({"models": args.model}) as ctx:
        extras = ctx.extras
        wanted = [
            (HubRepo.parse(m), extras.get("allow_patterns") or None) for m in extras["models"]
        ]
        clip = extras.get("clip") or {}
        if clip.get("pretrained"):
            from biocap_assets.training.pretrained import hub_repo

            found = hub_repo(clip["model"], clip["pretrained"])
            if found is None:
                ctx.log.info(
                    f"{clip['model']} / {clip['pretrained']}: open_clip does not fetch these "
                    "weights from the hub; nothing to cache"
                )
            else:
                repo, files = found
                wanted.append((HubRepo(repo), list(files)))
        rows = []
        for repo, patterns in wanted:
            ctx.log.info(f"caching {repo}")
            row = fetch(repo, patterns)
            ctx.log.info(f"{repo}: {row['files']} files, {row['bytes'] / 1e9:.2f} GB")
            rows.append(row)
        ctx.report_result({"models": rows})


if __name__ == "__main__":
    run_main(main)
