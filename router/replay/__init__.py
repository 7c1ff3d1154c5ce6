"""A local upstream that speaks the providers' wire formats: scripted for tests, replayed from data for demos."""
