"""Names and one-line descriptions of the heads, importable without loading any head code
(the CLI builds its --head choices from these at start-up)."""

HEAD_HELP = {
    "gap-dense": "GlobalAveragePooling2D + Dense(softmax) in Keras (--recipe classic|default)",
    "logreg": "multinomial logistic regression, C chosen on validation",
    "svm": "one-vs-rest linear SVM (squared hinge), C chosen on validation",
    "mlp": "GAP + one ReLU hidden layer (512) + softmax, early stopping on validation",
    "knn": "cosine k-nearest neighbours, k chosen on validation",
}
HEAD_NAMES = tuple(HEAD_HELP)
