"""Networks by name. Importing this package registers every family (definitions only; nothing is built)."""

from digitlab.models import tutorial  # noqa: F401  (registers the tutorial networks)
from digitlab.models.registry import count_parameters, create_model, get_entry, list_models, register_model

__all__ = ["count_parameters", "create_model", "get_entry", "list_models", "register_model"]
