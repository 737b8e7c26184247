"""The engine: from a spec to a verdict. The oracle predicts, the planner chooses cases with it,
the executions run them once on the provider through a world, and each check kind judges them.

It imports the spec model and the provider contract, never the runner or the command line.
"""
