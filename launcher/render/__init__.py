"""Rendering a JobSpec into what a scheduler reads: pure functions, no I/O.

``launcher.render.k8s`` turns a spec into Kubernetes manifests (plain dicts, one per
object): ``k8s_target`` validates the options and fixes the job's names, ``k8s_pod``
renders the pod every flavour runs, ``flavours/`` holds one class per flavour (its
objects, state conditions and REST path), ``k8s_resources`` the REST paths of the
built-in kinds. Each renderer imports only the standard library, pyyaml and ``launcher``.
"""
