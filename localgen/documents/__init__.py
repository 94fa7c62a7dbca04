"""Stage 4b: the user's own unlabeled documents, labelled by the local model
(`label`), with how each is asked (`asking`) and which are chosen to train on (`choose`)."""
