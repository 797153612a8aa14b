"""The workflows' contracts: inputs, state, status and controls of each capability.

Pure pydantic data: the workflows, the activities, the client side and the CLI all import it, and it
imports nothing that does I/O. One module per capability, plus ``common`` for what they share.
"""
