"""The classifier: a sentence encoder and a linear head, trained on real and synthetic
rows, saved as a model folder, scored on real data.

`train` embeds and fits (`finetune` trains the encoder with the head, `setfit` tunes it on
pairs first), `mixing` weighs the synthetic rows, `classifier` saves and loads model
folders, `evaluation` scores with bootstrap intervals and paired differences.
"""
