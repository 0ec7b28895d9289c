"""Rendering a JobSpec into what a scheduler reads: pure functions, no I/O.

``launcher.render.k8s`` turns a spec into Kubernetes manifests (plain dicts, one per
object). Each renderer imports only the standard library, pyyaml and ``launcher``.
"""
