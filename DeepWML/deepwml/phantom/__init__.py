"""Multi-center FLAIR phantoms on real anatomy (MNI ICBM152 2009a), with two simulated raters."""
