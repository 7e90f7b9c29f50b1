"""Route handlers of the console, one module per page family."""
