// The optimisation passes; Pipeline.swift lists them in order.
