"""Training: the pure step (:mod:`.core`), the epoch loop and ``fit`` (:mod:`.train`),
the compiled step, losses, regularizers, optimizers and schedules, and the run
configuration (:mod:`.run_config`)."""
