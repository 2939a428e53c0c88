"""The base both wings stand on: the paper's constants, statistics of uncertainty, I/O and checks."""
