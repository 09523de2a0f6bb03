"""Structures and their labels: extxyz parsing and dialects, stored datasets, honest splits,
generated structures and the demo data."""
