"""pandas <-> Spark at the partition boundary: canonical dtypes in, Spark types out.

Spark hands a partition to pandas with its own dtypes (timestamps as naive UTC
wall-clock times, nullable integers as floats, strings as objects); the feature builder
and the rule engine check the canonical fact dtypes, so every partition is coerced
back to them first. On the way out, categoricals become strings (each partition has
its own categories), every pandas dtype maps to one Spark type, and the frame crosses
as Arrow cast to that schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructType

__all__ = ["coerce", "empty_frame", "spark_schema", "to_arrow"]


def empty_frame(dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """A frame with no rows and the given column dtypes."""
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()})


def coerce(frame: pd.DataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """``frame``'s columns named in ``dtypes`` cast to them (others dropped).

    Columns ``dtypes`` names but ``frame`` lacks are left out, so the contract checks
    downstream report them as missing.
    """
    out: dict[str, pd.Series] = {}
    for name, dtype in dtypes.items():
        if name not in frame.columns:
            continue
        column = frame[name]
        if isinstance(dtype, pd.CategoricalDtype):
            # Categories come from the values (an empty frame's dtype has none; each
            # partition has its own, as when the builder made them).
            out[name] = column.astype("category")
        elif str(dtype).startswith("datetime64"):
            column = pd.to_datetime(column)
            if column.dt.tz is None:
                column = column.dt.tz_localize("UTC")
            out[name] = column.astype(dtype)
        elif str(column.dtype) != str(dtype):
            out[name] = column.astype(dtype)
        else:
            out[name] = column
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` as an Arrow table of exactly ``schema`` (Spark's types for it).

    Categoricals (each partition has its own categories) and object columns become
    pandas strings first, so a value crosses as the text pandas shows, not as Arrow's
    own spelling of it; NaN in float columns becomes null, as Spark expects.
    """
    import pyarrow as pa

    text = {
        name: frame[name].astype("string")
        for name, dtype in frame.dtypes.items()
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype)
    }
    if text:
        frame = frame.assign(**{str(k): v for k, v in text.items()})
    return pa.Table.from_pandas(frame, preserve_index=False).cast(schema)


def _spark_type(dtype: Any) -> DataType:
    from pyspark.sql import types as T

    text = str(dtype)
    simple: dict[str, DataType] = {
        "float32": T.FloatType(),
        "float64": T.DoubleType(),
        "Float64": T.DoubleType(),
        "Float32": T.FloatType(),
        "int8": T.ByteType(),
        "Int8": T.ByteType(),
        "int16": T.ShortType(),
        "Int16": T.ShortType(),
        "int32": T.IntegerType(),
        "Int32": T.IntegerType(),
        "int64": T.LongType(),
        "Int64": T.LongType(),
        "bool": T.BooleanType(),
        "boolean": T.BooleanType(),
    }
    if text in simple:
        return simple[text]
    if text.startswith("datetime64"):
        return T.TimestampType()
    if isinstance(dtype, pd.CategoricalDtype) or text in ("string", "str", "object"):
        return T.StringType()
    raise TypeError(f"Expected a column dtype Spark can hold. Got {text}.")


def spark_schema(dtypes: Mapping[str, Any]) -> StructType:
    """The Spark schema of a frame with these column dtypes (every field nullable)."""
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField(str(name), _spark_type(dtype), True) for name, dtype in dtypes.items()]
    )
