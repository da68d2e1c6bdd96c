"""Deployment: pre-processing, runners, export, quantisation, parity, energy."""
