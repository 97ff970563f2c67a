"""Assembly: options, the Beam graph, the command line and the run report."""
