"""The study engine: data, training, evaluation, presets, one run, its record, sweeps, analyses and speed measurements."""
