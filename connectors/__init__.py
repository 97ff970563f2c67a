"""Everything that touches the outside: sources, the CAPI client and sink, the emulator."""
