"""dvm_runtime: DVM-style bytecode for fused kernels. isa (the one ISA definition), encoder (Fused body +
shapes -> Program), disasm, pyvm (numpy VM and validator), cvm (the C VM), backend (DvmBackend)."""
