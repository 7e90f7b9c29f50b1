from tests.training.registry_fixtures import (
    churn_window,
    registry,
    registry_template,
    store,
    value_window,
)

__all__ = ["churn_window", "registry", "registry_template", "store", "value_window"]
