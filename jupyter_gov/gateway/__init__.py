"""Gateway mode: governed front doors that run the engine outside the kernel."""
