"""The report: a run's data measured against the real data.

`metrics` computes distinct-n, self-BLEU, Remote Clique, Chamfer and similarity to real;
`charts` draws them as SVG; `report` writes metrics.json and a self-contained
report.html (the template is under `templates/`).
"""
