from tests.training.registry_fixtures import registry_template

__all__ = ["registry_template"]
