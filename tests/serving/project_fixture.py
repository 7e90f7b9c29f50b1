"""A real, small project for serving tests: facts, a tagging run, champion models.

Built with the project's own commands: ``tagsmith init``, ``generate``, ``facts import``;
tiny LightGBM models registered in the project's MLflow SQLite registry as champions;
then ``tagsmith tags run``, whose predicted tags come from those champions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from click.testing import CliRunner

from features.build import build_features
from features.spec import default_spec, spec_hash
from features.store import FactStore
from scoring.contract import ModelContract, categorical_levels_of, model_matrix
from tags.store import TagStore
from tagsmith.cli import main
from tagsmith.project import Project
from tests.scoring.registry import register_booster

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


@dataclass
class ServedProject:
    project: Project
    features: pd.DataFrame
    tags: pd.DataFrame
    run_id: str


def _invoke(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def train(features: pd.DataFrame, target: str, seed: int = 0) -> tuple[lgb.Booster, ModelContract]:
    names = [c for c in features.columns if c not in ("customer_id", "as_of")]
    contract = ModelContract(
        target=target,  # type: ignore[arg-type]
        horizon_days=90,
        feature_names=names,
        categorical_levels=categorical_levels_of(features, names),
        spec_hash=spec_hash(default_spec()),
    )
    x = model_matrix(features, contract)
    recency = features["recency_days"].astype("float64").fillna(9999).to_numpy()
    if target == "churn":
        y = (recency > 60).astype(float)
        params = {"objective": "binary"}
    else:
        y = features["monetary_total"].astype("float64").fillna(0).to_numpy() / 4
        params = {"objective": "regression"}
    params |= {"verbose": -1, "num_threads": 1, "min_data_in_leaf": 10, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=10 + seed), contract


def build(root: Path, n_customers: int = 400) -> ServedProject:
    base = ["--project", str(root)]
    _invoke([*base, "init"])
    _invoke(
        [
            *base,
            "data",
            "generate",
            "--customers",
            str(n_customers),
            "--seed",
            "7",
            "--out",
            str(root / "raw"),
        ]
    )
    _invoke(
        [
            *base,
            "facts",
            "import",
            "--customers",
            str(root / "raw" / "customers.csv"),
            "--events",
            str(root / "raw" / "events.csv"),
        ]
    )
    project = Project.load(root)
    facts = FactStore(project.facts_dir)
    customers, events = facts.load_customers(), facts.load_events()
    # The features the tagging run of AS_OF computes, to train the tiny champions on.
    features = build_features(customers, events, as_of=AS_OF, spec=default_spec())
    uri = project.mlflow_tracking_uri
    artifacts = project.mlflow_artifacts_dir
    for name, target in (("churn-predictor", "churn"), ("value-predictor", "value")):
        booster, contract = train(features, target)
        register_booster(uri, artifacts, name, booster, contract)
    # The batch run of the CLI: features -> rule tags -> champions' predicted tags.
    _invoke([*base, "tags", "run", "--role", "admin", "--as-of", AS_OF.date().isoformat()])
    store = TagStore(project.tag_store_path)
    long = store.snapshot(AS_OF)
    assert {"churn_risk", "predicted_value"} <= set(long["tag_id"]), "no predicted tags"
    return ServedProject(
        project=project, features=features, tags=long, run_id=store.run_info(AS_OF).run_id
    )


def promote_new_churn_model(served: ServedProject, seed: int) -> str:
    """Register another churn model (different trees) as champion; its version."""
    booster, contract = train(served.features, "churn", seed=seed)
    p = served.project
    return register_booster(
        p.mlflow_tracking_uri, p.mlflow_artifacts_dir, "churn-predictor", booster, contract
    )


def customer_facts(served: ServedProject, customer_id: str) -> tuple[dict, list[dict]]:
    """One stored customer's facts as ``POST /score`` takes them (events before as_of)."""
    facts = FactStore(served.project.facts_dir)
    customers = facts.load_customers()
    row = customers[customers["customer_id"] == customer_id].iloc[0]
    attributes = {
        k: (None if pd.isna(v) else (int(v) if isinstance(v, (np.integer,)) else v))
        for k, v in row.items()
        if k not in ("customer_id", "signup_at")
    }
    events = facts.load_events()
    mine = events[(events["customer_id"] == customer_id) & (events["occurred_at"] < AS_OF)]
    records = []
    for e in mine.to_dict("records"):
        record = {"occurred_at": e["occurred_at"].isoformat(), "event_type": e["event_type"]}
        for key in ("amount", "quantity"):
            if not pd.isna(e[key]):
                record[key] = float(e[key])
        for key in ("category", "product_id", "order_id"):
            if not pd.isna(e[key]):
                record[key] = str(e[key])
        records.append(record)
    customer = {
        "customer_id": customer_id,
        "signup_at": row["signup_at"].isoformat(),
        "attributes": attributes,
    }
    return customer, records
