"""A Tagsmith model in MLflow: the native LightGBM flavor and a pyfunc over typed inputs.

The booster reads categorical features as level codes (floats), but a caller of the
pyfunc flavor (``mlflow.pyfunc.load_model``, ``mlflow models serve``) has the features
themselves. The logged signature therefore types categoricals as strings and numbers as
doubles, and the ``python_function`` flavor loads :mod:`scoring.tagsmith_pyfunc` (copied
into the model), which codes the strings with the contract's levels before predicting.
The ``lightgbm`` flavor, which Tagsmith loads, is unchanged.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import pandas as pd

from scoring import tagsmith_pyfunc
from scoring.contract import ModelContract, contract_metadata

__all__ = ["FLAVOR_NAME", "log_model", "save_model", "typed_example", "typed_signature"]

FLAVOR_NAME = "lightgbm"


def typed_example(coded: pd.DataFrame, contract: ModelContract) -> pd.DataFrame:
    """``coded`` (the booster's matrix as a frame) with each categorical as its level.

    Codes index the contract's levels, so decoding is exact; a missing code is None.
    """
    out = coded.astype("float64")
    typed: dict[str, Any] = {name: out[name] for name in contract.feature_names}
    for name, levels in contract.categorical_levels.items():
        typed[name] = pd.Series(
            [levels[int(c)] if pd.notna(c) else None for c in coded[name]],
            index=coded.index,
            dtype=object,
            name=name,
        )
    return pd.DataFrame(typed, index=coded.index)[contract.feature_names]


def save_model(lgb_model: Any, path: str, mlflow_model: Any = None, **kwargs: Any) -> None:
    """``mlflow.lightgbm.save_model``, with the pyfunc flavor loading typed inputs.

    Passed as the flavor to ``mlflow.models.Model.log`` (which calls it with the
    model folder and the ``Model`` it is filling in).
    """
    import mlflow.lightgbm
    from mlflow.models import Model

    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    code = [*(kwargs.pop("code_paths", None) or []), tagsmith_pyfunc.__file__]
    mlflow.lightgbm.save_model(
        lgb_model, path, mlflow_model=mlflow_model, code_paths=code, **kwargs
    )
    mlflow_model.flavors["python_function"]["loader_module"] = tagsmith_pyfunc.LOADER_MODULE
    mlflow_model.save(os.path.join(path, "MLmodel"))


def typed_signature(
    booster: Any, coded: pd.DataFrame, contract: ModelContract
) -> tuple[pd.DataFrame, Any]:
    """The typed input example for ``coded`` and the signature the model is logged with.

    Inputs are typed as :func:`typed_example` types them; outputs are the booster's
    scores on ``coded``, predicted on one thread (the logged model is single-threaded).
    """
    from mlflow.models import infer_signature

    typed = typed_example(coded, contract)
    scores = np.asarray(booster.predict(coded.to_numpy(), num_threads=1))
    return typed, infer_signature(typed, scores)


def log_model(
    booster: Any,
    contract: ModelContract,
    typed: pd.DataFrame,
    signature: Any,
    *,
    pip_requirements: list[str],
    registered_model_name: str | None = None,
) -> Any:
    """Log ``booster`` as a Tagsmith model into the active MLflow run; its ``ModelInfo``.

    The one way a champion is logged (training, and the registries tests and benchmarks
    build): this module as the flavor, the contract as metadata, ``typed`` as the input
    example. With ``registered_model_name`` MLflow also registers the logged model.
    """
    from mlflow.models import Model

    return Model.log(
        artifact_path=None,
        name="model",
        flavor=sys.modules[__name__],
        flavor_name=FLAVOR_NAME,
        lgb_model=booster,
        signature=signature,
        input_example=typed,
        metadata=contract_metadata(contract),
        pip_requirements=pip_requirements,
        registered_model_name=registered_model_name,
    )
