"""Tests of the pure tlog core (plc.tlog)."""
