"""Adapters between the reconcilers and a real apiserver (kubernetes-asyncio)."""
