"""Graph-kernel fusion: expand composites, cluster fusable ops, outline clusters into msgx::Fused nodes."""


def o1_passes(flags="") -> tuple:
    """The (name, Graph -> Graph) passes O1 adds after O0, configured by MindSpore-style flags."""
    from .pipeline import o1_passes as passes  # lazy: importing the package stays cheap

    return passes(flags)
