"""The service: wires config, firing, ledger and delivery into a daemon and runs it."""
