"""Training images synthesised from real anatomy: anatomy -> lesions -> appearance -> acquisition."""
