"""Exercise plans: templates, prescriptions to patients, and their immutable versions."""
