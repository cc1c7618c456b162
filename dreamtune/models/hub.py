"""``--push-to-hub REPO``: upload a run's model/ folder (weights, model card, widget image)."""

from __future__ import annotations

import os
from pathlib import Path


def push_model(model_dir: Path, repo_id: str, private: bool = True) -> str:
    """Upload ``model_dir`` to ``repo_id``; returns one sentence saying what happened. Training
    already succeeded, so no outcome here is an error: offline or refused, the files stay local."""
    later = f"the model stays in {model_dir}; push it later with `hf upload {repo_id} {model_dir}`"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return f"skipped pushing to the hub (HF_HUB_OFFLINE is set); {later}."
    try:
        from huggingface_hub import create_repo, upload_folder

        create_repo(repo_id, private=private, exist_ok=True)
        url = upload_folder(repo_id=repo_id, folder_path=str(model_dir), commit_message="dreamtune training result")
    except Exception as exc:  # no network, no token, no rights: the same advice for each
        return f"could not push to the hub {repo_id} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); {later}."
    return f"pushed {model_dir} to {url}"
