"""Fine-tuning methods, chosen once by name: `apply_method(model, "lora", r=8)`."""

# Each module registers its methods; the import order is the paper's table order.
from vitcf.model.methods import standard  # noqa: F401, I001
from vitcf.model.methods import lora  # noqa: F401
from vitcf.model.methods import block_expansion  # noqa: F401
from vitcf.model.methods.base import METHODS, Method, apply_method, make_method

__all__ = ["METHODS", "Method", "apply_method", "make_method"]
