"""Benchmarks behind `appliance bench ...`: each prints its figures and the conditions they were measured in."""
