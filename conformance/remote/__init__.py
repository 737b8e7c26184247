"""Remote providers: the wire protocol, the harness's client (and cassettes) and the agent that
serves a provider on the machine under test.
"""
