"""The runner: a run as a pytest session (collection, the checks as items, results as they
finish, workers of -n).
"""
