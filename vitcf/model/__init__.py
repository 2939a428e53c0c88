"""The model wing: backbones, fine-tuning methods, parameter accounting and checkpoints."""
