"""Methods: one package per paper (molex, icma, lardo, moltc), each with the same rooms — method.py
(the paper's algorithm), experiment.py (typed Settings and one pure function per Practical section,
returning `experiment.Results`), figures.py — built on data, chem, models and eval; plus the shared
contract (`experiment`), the shared baselines (`baselines`) and notebook 00's `representations`."""
