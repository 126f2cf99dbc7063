"""Gaussian diffusion: the noise schedule's closed forms (schedule.py) and the samplers (samplers.py)."""
