"""The step executor: runs each operation of a run as a journaled step, resumes, stops at safe points."""
