"""Running the whole system on one machine (`switchyard up`)."""
