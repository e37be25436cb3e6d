"""Convo: a self-hosted LLM chat workspace."""

__version__ = "0.1.0"
