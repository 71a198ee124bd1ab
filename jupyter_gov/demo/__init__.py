"""Deterministic synthetic demo data: no real person's details, identical on every machine."""

from jupyter_gov.demo.data import SEED, demo_tables, load_demo, luhn_valid

__all__ = ["SEED", "demo_tables", "load_demo", "luhn_valid"]
