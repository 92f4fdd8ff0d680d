"""Models, how they are chosen, and how good they are.

- `base`: the one interface every model implements (fit, then predict and/or recommend);
  `catalog`: the models the project compares, built from config.
- `baselines`, `als`, `hybrid`: the models; `topk`: the blocked top-K every list comes from.
- `tuning`: forward-chaining cross-validation over any model's grid; `metrics`: rating and
  ranking metrics; `evaluate`: every model on the test split.
- `train`: the train_als job; reads ratings_train, ratings_test and movies, writes
  model_metrics; `tracking` (MLflow runs and registry), `gate` (the champion decision),
  `plots`, `schedule` (whether a night trains; reads drift_alerts and model_metrics).
"""
