"""Networks by name. Importing this package registers every family (definitions only; nothing is built)."""

from digitlab.training.models import digitnet, tutorial  # noqa: F401  (registers every family)
from digitlab.training.models.registry import count_parameters, create_model, get_entry, list_models, register_model

__all__ = ["count_parameters", "create_model", "get_entry", "list_models", "register_model"]
