"""``modelmill recommend refresh``: a derived bundle whose known items add new interactions,
the model unchanged (no retraining), and the helpers the pipeline shares with it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from modelmill.bundle import FEATURES, PROFILE, Bundle, derive, read_bundle
from modelmill.config.schema import DataConfig
from modelmill.data.sources import read_table
from modelmill.encryption import Key
from modelmill.errors import BundleError
from modelmill.recommending.interactions import Interactions
from modelmill.recommending.predictor import KNOWN_FILE, RecommendPredictor, known_bytes, predictor_state
from modelmill.recommending.read import read_new_interactions

__all__ = ["check_new_folder", "data_hash", "profile", "refresh_bundle", "stored_pattern"]

log = logging.getLogger("modelmill")


def refresh_bundle(bundle_path: str | Path | Bundle, data: pd.DataFrame | str | Path, out: str | Path, *,
                   key: Key | None = None) -> Path:
    """A derived bundle at ``out`` whose known items add the interactions of ``data``: users the
    bundle does not know are added (ranked from their items), items it does not know are dropped
    with a warning, and an interaction the bundle knows already is skipped (its weight unchanged;
    counted in a warning), so refreshing twice with the same export gives the same known items.
    The model is unchanged (its weights are copied byte for byte); the lineage names the parent.
    Written atomically, never over an existing path; ``out`` is checked before the data is read.
    ``bundle_path`` may be a bundle already read and verified.

    Raises:
        BundleError: not a recommend bundle, or ``out`` exists already or cannot be written.
        DataError: as :func:`~modelmill.recommending.read.read_new_interactions`.
    """
    from modelmill.encryption import as_key

    bundle = bundle_path if isinstance(bundle_path, Bundle) else \
        read_bundle(bundle_path, as_key(key) if key is not None else None)
    parts = RecommendPredictor.from_bundle(bundle)
    check_new_folder(Path(out))
    source = str(data) if isinstance(data, (str, Path)) else "the frame"
    frame = data if isinstance(data, pd.DataFrame) else read_table(DataConfig(source=str(data)), base_dir=Path.cwd())
    new, warnings = read_new_interactions(frame, parts.config, parts.user_ids, parts.item_ids, source=source)
    added = new.matrix()
    old = parts.known.copy()
    old.resize((new.n_users, new.n_items))
    overlap = added.multiply(stored_pattern(old)).tocsr()
    repeated = int(overlap.nnz)
    if repeated:
        warnings.append(f"{repeated} interaction(s) were known to the bundle already and were skipped (their weights "
                        "unchanged): a refresh adds new interactions only")
    fresh = (added - overlap).tocsr()
    fresh.eliminate_zeros()
    for warning in warnings:
        log.warning(warning)
    refreshed = RecommendPredictor(parts.config, parts.recommender, new.user_ids, new.item_ids,
                                   (old + fresh).tocsr(), parts.fitted_users)
    features = predictor_state(bundle.features_state()["recommender"], new.user_ids, new.item_ids,
                               parts.fitted_users)
    details = {"data_sha256": data_hash(new), "interactions": len(new), "known_already": repeated,
               "interactions_added": int(fresh.nnz), "users_added": new.n_users - len(parts.user_ids),
               "warnings": warnings}
    return derive(bundle, out, action="refreshed", details=details, replace={
        FEATURES: json.dumps(features, indent=2).encode(), KNOWN_FILE: known_bytes(refreshed.known),
        PROFILE: json.dumps(profile(refreshed), indent=2).encode()})


def check_new_folder(out: Path) -> None:
    """Refuse, before any work, a bundle folder that cannot be written: one that exists (and is
    not an empty folder), or whose nearest existing parent is a file or not writable."""
    if out.is_dir() and not any(out.iterdir()):
        return
    if out.exists() or out.is_symlink():
        raise BundleError(f"{out} already holds {'a bundle' if (out / 'manifest.json').is_file() else 'files'}; "
                          "bundles are immutable once written and are never overwritten. Fix: give a new folder "
                          "with -o (or remove the old one first)")
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BundleError(f"cannot write the bundle {out}: {parent} is a file, not a folder. Fix: give a folder "
                          "path with -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BundleError(f"cannot write the bundle {out}: {parent} is not writable. Fix: give a folder you can "
                          "write to with -o")


def profile(parts: RecommendPredictor) -> dict[str, Any]:
    """The known interactions in numbers, and the most popular items (what the fallback serves)."""
    per_user = np.diff(parts.known.indptr)
    popular = np.argsort(-parts.popularity, kind="stable")[:20]
    return {"users": len(parts.user_ids), "items": len(parts.item_ids), "interactions": int(parts.known.nnz),
            "fitted_users": parts.fitted_users,
            "interactions_per_user": {"mean": float(per_user.mean()) if len(per_user) else 0.0,
                                      "median": float(np.median(per_user)) if len(per_user) else 0.0,
                                      "max": int(per_user.max(initial=0))},
            "popular_items": [parts.item_ids[c] for c in popular]}


def stored_pattern(matrix: Any) -> Any:
    """The stored entries of a sparse matrix, each as 1 (float32 CSR)."""
    pattern = sparse.csr_matrix(matrix, dtype=np.float32, copy=True)
    pattern.data[:] = 1.0
    return pattern


def data_hash(data: Interactions) -> str:
    """One hash of the interactions as read (ids, pairs, weights, times)."""
    digest = hashlib.sha256()
    for ids in (data.user_ids, data.item_ids):
        digest.update("\x1f".join(ids).encode() + b"\x1e")
    for array in (data.users, data.items, data.weights, data.times):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
