"""vitcf: fine-tuning self-supervised ViTs with and without catastrophic forgetting."""

from importlib import metadata as _metadata

from vitcf.model.backbones import BACKBONES, WeightsUnavailableError, cls_features, create_backbone
from vitcf.model.checkpoints import CheckpointError
from vitcf.model.methods import METHODS, apply_method, make_method
from vitcf.model.params import count_trainable



def _version() -> str:
    """The checkout's pyproject.toml version where there is one (an editable install's metadata can lag
    behind it), else the installed package's."""
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        import tomllib

        return tomllib.loads(pyproject.read_text())["project"]["version"]
    except (ImportError, OSError, KeyError):
        pass
    try:
        return _metadata.version("vitcf")
    except _metadata.PackageNotFoundError:
        return "unknown"


__version__ = _version()

__all__ = [
    "BACKBONES",
    "METHODS",
    "CheckpointError",
    "WeightsUnavailableError",
    "apply_method",
    "cls_features",
    "count_trainable",
    "create_backbone",
    "make_method",
]
