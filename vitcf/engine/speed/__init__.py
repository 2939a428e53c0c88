"""Speed on one device: measured (`measure`, `flops`, `reference`), then projected and judged (`projection`)."""
