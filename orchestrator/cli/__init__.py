"""The ``orchestrator`` command line. Heavy clients are imported inside commands so ``--help`` stays fast."""
