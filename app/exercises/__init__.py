"""Exercise definitions: the shipped foot-drop catalog and, later, clinics' own exercises."""
