"""Methods: one module per paper (molex, icma, lardo, moltc),
built from data, chem, models, eval."""
