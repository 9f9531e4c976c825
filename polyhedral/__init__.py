"""polyhedral: statement format, isl dependences, configurable scheduler, C code generation, PolyBackend.

See ARCHITECTURE.md ("Polyhedral"); the PolyBench kernels are in polyhedral.polybench."""
