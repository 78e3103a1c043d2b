"""The XManager integration: experiments, work units and their metadata context (SPEC layer 7)."""
