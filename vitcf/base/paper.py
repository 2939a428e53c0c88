"""The paper's reported results and training settings (Bafghi et al., CVPR 2024 Workshops), as data.

Figures are those of the paper's CIFAR-100 table (IN-1K: k-NN accuracy after fine-tuning) and of
the authors' public configs; see the book's chapter on the paper for their provenance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    method: str  # a name in vitcf.METHODS
    hparams: dict
    params_text: str  # the trainable-parameter count exactly as printed in the paper
    cifar100: float
    in1k: float
    mean: float
    lr: float  # SGD learning rate in the authors' config for this row
    warmup: int = 500  # linear warm-up steps of the cosine schedule (the linear probe uses 100)
    # How many copies of the classifier the reported count includes: the LoRA rows count it twice
    # (see vitcf.model.params for the evidence).
    head_copies: int = 1


PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow("full", {}, "85.9 M", 88.13, 25.24, 56.69, lr=0.005),
    PaperRow("top_k", {"k": 3}, "21.3 M", 84.56, 74.15, 79.36, lr=0.005),
    PaperRow("linear", {}, "76.9 K", 80.57, 76.11, 78.34, lr=0.005, warmup=100),
    PaperRow("lora", {"r": 4}, "301 K", 87.91, 66.82, 77.37, lr=0.05, head_copies=2),
    PaperRow("lora", {"r": 8}, "448 K", 88.27, 65.99, 77.13, lr=0.005, head_copies=2),
    PaperRow("lora", {"r": 16}, "743 K", 87.84, 65.06, 76.45, lr=0.05, head_copies=2),
    PaperRow("block_expansion", {"p": 1}, "7.2 M", 82.72, 75.75, 79.24, lr=0.05),
    PaperRow("block_expansion", {"p": 2}, "14.3 M", 86.70, 75.54, 81.12, lr=0.05),
    PaperRow("block_expansion", {"p": 3}, "21.3 M", 88.58, 74.61, 81.60, lr=0.05),
    PaperRow("block_expansion", {"p": 4}, "28.4 M", 89.09, 72.28, 80.69, lr=0.05),
)

# The authors' schedule: 10,000 SGD steps at batch 128 (about 25.6 CIFAR epochs).
PAPER_STEPS = 10_000
PAPER_BATCH = 128

# DINO ViT-B/16's published weighted k-NN accuracy on ImageNet-1K: the "no forgetting" ceiling.
DINO_VITB16_KNN = 76.1

# The authors' repository also plots downstream accuracy against IN-1K k-NN accuracy for four more new
# domains. Values read off that figure (approximate; which LoRA rank and block count it shows is not
# stated): domain -> ((method, downstream accuracy, IN-1K k-NN accuracy), ...).
PAPER_FIGURE: dict[str, tuple[tuple[str, float, float], ...]] = {
    "cifar10": (("Linear", 94.3, 76.0), ("Block expansion", 98.5, 75.5), ("LoRA", 98.4, 18.0), ("Full", 98.3, 31.5)),
    "dtd": (("Linear", 69.9, 76.0), ("Block expansion", 70.7, 75.5), ("LoRA", 70.2, 64.5), ("Full", 66.8, 54.5)),
    "food101": (("Linear", 79.9, 76.0), ("Block expansion", 87.2, 74.0), ("LoRA", 85.8, 60.0), ("Full", 86.3, 47.0)),
    "flowers102": (("Linear", 93.7, 76.0), ("Block expansion", 94.6, 75.5), ("LoRA", 94.8, 70.0), ("Full", 93.9, 61.0)),
}
