"""The CNI plugin `sart-cni`: the protocol (`sart.cni.spec`, pure) and the executable
(`sart.cni.plugin`, which forwards each call to the node agent over a unix socket).

Nothing is imported here: the runtime starts the plugin once per pod operation, so every
import on its path costs start-up time.
"""
